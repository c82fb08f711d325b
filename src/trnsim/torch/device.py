"""`trnsim.torch.device`: run an unmodified PyTorch model on the CPU while every aten
operation is charged to a simulated NeuronCore.

    with trnsim.torch.device("trn2") as dev:
        y = model(x)
    print(dev.profile.total_time)          # seconds on one trn2 NeuronCore
    print(dev.profile.table())             # model -> module -> op -> kernel

`numerics=False` runs the model on fake tensors (shapes and dtypes only, nothing
computed or allocated: a 16K-token prompt costs no activation memory); outputs are
then fake tensors. A model built under the device's `fake_mode` has fake parameters
too (no weights are initialized or stored):

    dev = trnsim.torch.device("trn2", numerics=False)
    with dev.fake_mode:
        model = build_model()
    with dev:
        model(ids)
 `profile=DIR` writes the Perfetto trace and the HTML report there
on exit. `progress=print` (or any callable taking a string) reports each kernel as it
is simulated (an identical call is simulated once). What each operation costs:
trnsim/torch/charges.py.
"""
from __future__ import annotations

from torch.nn.modules import module as _module
from torch.utils._python_dispatch import TorchDispatchMode

from ..machine.launch import observe
from ..nki.jit import chip_context
from .charges import Charger
from .model_profile import ModelProfile, Node


class _ChargeMode(TorchDispatchMode):
    def __init__(self, charger: Charger, tree: "_Tree"):
        super().__init__()
        self.charger, self.tree = charger, tree

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        launched = []
        with observe(lambda fn, run: launched.append((fn, run))):
            out = func(*args, **kwargs)
        charge = self.charger(func, args, kwargs, out, launched)
        if charge is not None:
            self.tree.top.children.append(Node(charge.op, "op", charge=charge))
        return out


class _Tree:
    """The module call stack, kept by global forward hooks: each forward call of a
    module is a node under the call that made it."""

    def __init__(self, name: str):
        self.root = Node(name, "model")
        self.stack = [self.root]
        self.names: dict[int, str] = {}

    @property
    def top(self) -> Node:
        return self.stack[-1]

    def enter(self, mod, args):
        if len(self.stack) == 1 and id(mod) not in self.names:
            self.names.update({id(m): n for n, m in mod.named_modules()})
            self.names[id(mod)] = ""
        qual = self.names.get(id(mod))
        cls = type(mod).__name__
        label = f"{qual} ({cls})" if qual else cls
        node = Node(label, "module")
        self.top.children.append(node)
        self.stack.append(node)

    def leave(self, mod, args, out):
        if len(self.stack) > 1:
            self.stack.pop()


class device:
    """Context manager: the model's operations inside are charged to one NeuronCore of
    `chip`; `.profile` (a ModelProfile) is ready on exit."""

    def __init__(self, chip: str = "trn2", *, numerics: bool = True, profile=None,
                 name: str = "model", progress=None):
        self.charger = Charger(chip, progress)
        self.chip = self.charger.chip
        self.numerics = numerics
        self.fake_mode = None
        if not numerics:
            from torch._subclasses.fake_tensor import FakeTensorMode
            self.fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
        self.directory = profile
        self.name = name
        self.profile: ModelProfile | None = None
        self.written: dict = {}

    def __enter__(self):
        self._tree = _Tree(self.name)
        self._hooks = [
            _module.register_module_forward_pre_hook(self._tree.enter),
            _module.register_module_forward_hook(self._tree.leave, always_call=True)]
        # kernels the model's custom ops launch run on this chip
        self._modes = [m for m in (chip_context(self.chip.path), self.fake_mode,
                                   _ChargeMode(self.charger, self._tree)) if m]
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc):
        for m in reversed(self._modes):
            m.__exit__(*exc)
        for h in self._hooks:
            h.remove()
        self.profile = ModelProfile(self._tree.root, self.chip)
        if self.directory is not None and exc[0] is None:
            self.written = self.profile.save(self.directory)
        return False


__all__ = ["device"]
