"""`nki.typing`: annotations for kernel parameters (`nt.tensor[128, 512]`)."""
from ..machine.tensor import NkiTensor


class _Annotation:
    """`tensor`, `tensor[shape...]` and `tensor[shape, dtype]` annotate kernel arguments;
    the simulator does not enforce them."""

    def __init__(self, name, params=()):
        self.name, self.params = name, params

    def __getitem__(self, params):
        return _Annotation(self.name, params if isinstance(params, tuple) else (params,))

    def __repr__(self):
        return f"nt.{self.name}{list(self.params) if self.params else ''}"


tensor = _Annotation("tensor")
mutable_tensor = _Annotation("mutable_tensor")
scalar = _Annotation("scalar")
Tensor = NkiTensor
