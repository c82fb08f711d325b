"""`nki.tensor` (moved to `nki.meta.tensor` in the NKI release notes): the tensor
class. Its other public contents are not documented, so only `NkiTensor` (the class
`nki.language.NkiTensor` documents) is here."""
from ..machine.tensor import NkiTensor  # noqa: F401

__all__ = ["NkiTensor"]
