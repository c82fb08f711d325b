"""trnsim: a software Trainium. Runs NKI kernels unmodified on a simulated NeuronCore."""
import inspect
import types

from . import compat  # noqa: F401  (trnsim.compat.install(): `import nki` runs on trnsim)
from .chips import available_chips, load_chip  # noqa: F401
from .machine.errors import NkiValidationError, UninitializedReadWarning  # noqa: F401
from .machine.launch import run_kernel  # noqa: F401
from . import profile  # noqa: F401,E402  (callable: trnsim.profile(kernel, *args))
from .entry import profile as _profile  # noqa: E402
from .entry import profile_ranks  # noqa: F401,E402
from .profile.cache import profile_cache  # noqa: F401,E402

__version__ = "0.1.0"


class _CallableModule(types.ModuleType):
    """`trnsim.profile(kernel, *args)` runs and profiles; `trnsim.profile.Profile` and
    the package's submodules import as usual."""

    def __call__(self, kernel, *args, **kwargs):
        return _profile(kernel, *args, **kwargs)


profile.__class__ = _CallableModule
profile.profile = _profile
profile.__signature__ = inspect.signature(_profile)


def _install_profile_hooks():
    from .machine import hooks
    from .profile.autosave import maybe_save, save_profile
    hooks.profile_run = profile.Profile.from_run
    hooks.save_profile = save_profile
    hooks.autosave = maybe_save


_install_profile_hooks()
