"""`nki.language.dtypes`: the NKI data types as a module (the same objects as
`nki.language.<name>` and `nki.dtype.<name>`)."""
from ..dtype import *  # noqa: F401,F403
from ..dtype import __all__  # noqa: F401
