"""trnsim: a software Trainium. Runs NKI kernels unmodified on a simulated NeuronCore."""
from .chips import available_chips, load_chip  # noqa: F401
from .machine.errors import NkiValidationError  # noqa: F401
from .machine.launch import run_kernel  # noqa: F401
from . import profile  # noqa: F401,E402  (callable: trnsim.profile(kernel, *args))
from .profile.cache import profile_cache  # noqa: F401,E402

__version__ = "0.1.0"
