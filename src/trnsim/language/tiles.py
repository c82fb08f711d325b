"""Tile plumbing of the compositions: results and intermediates, views that broadcast a
reduced tile, and moves into SBUF.

The compositions are written destination-passing (`*_into(dst, ...)`): the legacy
front end passes its destination view, a current-API function passes a `Result`, the
tile it returns, which is allocated only when the composition first writes it (after
the composition's intermediates, as a kernel would allocate them)."""
from __future__ import annotations

from .. import isa as _isa
from ..machine.tensor import MemoryRegion, NkiTensor
from ..numerics.dtypes import as_dtype
from .tensors import ndarray

sbuf = MemoryRegion.sbuf
psum = MemoryRegion.psum


def new(shape, dtype, fname, buffer=sbuf, tmp=False) -> NkiTensor:
    """A fresh tile named after the nl function (`nl.softmax`, `nl.softmax.tmp`)."""
    return ndarray(tuple(shape), as_dtype(dtype), buffer,
                   f"nl.{fname}" + (".tmp" if tmp else ""))


class Result:
    """The tile a composition writes, not yet allocated: shape, dtype and buffer are
    known, `tile` allocates it on first use (see `out`)."""

    def __init__(self, shape, dtype, fname, buffer=sbuf, tmp=False):
        self.shape = tuple(shape)
        self.dtype = as_dtype(dtype)
        self.buffer, self.space = buffer, buffer.space
        self._fname, self._tmp = fname, tmp
        self._tile = None

    @property
    def tile(self) -> NkiTensor:
        if self._tile is None:
            self._tile = new(self.shape, self.dtype, self._fname, self.buffer, self._tmp)
        return self._tile


def out(dst) -> NkiTensor:
    """The destination tile itself: a given tile, or a Result allocated now."""
    return dst.tile if isinstance(dst, Result) else dst


def aliases(v, dst) -> bool:
    """Whether tile v may share memory with the destination (never a fresh Result)."""
    return isinstance(v, NkiTensor) and isinstance(dst, NkiTensor) and v.storage is dst.storage


def whole_free(x, axes) -> bool:
    """Whether `axes` are all of x's free axes."""
    return axes == tuple(range(1, x.ndim))


def column(t: NkiTensor) -> NkiTensor:
    """A keepdims reduction result over all free axes as a [P, 1] view."""
    return t if t.ndim == 2 else t.reshape((t.shape[0], 1))


def bcast(t: NkiTensor, shape) -> NkiTensor:
    """Stride-0 view of t over the free axes of `shape` where t has size 1."""
    for d in range(1, t.ndim):
        if t.shape[d] == 1 and shape[d] != 1:
            t = t.broadcast(d, shape[d])
    return t


def to_sbuf(fname, x):
    """x itself when in SBUF, else a copy into SBUF (engines that cannot read PSUM)."""
    if x.space == "sbuf":
        return x
    t = new(x.shape, x.dtype, fname, tmp=True)
    if x.space == "hbm":
        _isa.dma_copy(dst=t, src=x)
    else:
        _isa.tensor_copy(dst=t, src=x)
    return t


def ts(fname, x, out_dtype, op0, operand0, op1=None, operand1=None, shape=None):
    """An intermediate (x op0 operand0) [op1 operand1] of `out_dtype` (tensor_scalar)."""
    t = new(shape or x.shape, out_dtype, fname, tmp=True)
    _isa.tensor_scalar(dst=t, data=x, op0=op0, operand0=operand0, op1=op1, operand1=operand1)
    return t


def tt(fname, a, b, op, out_dtype):
    """An intermediate a op b of `out_dtype` (tensor_tensor)."""
    t = new(a.shape, out_dtype, fname, tmp=True)
    _isa.tensor_tensor(dst=t, data1=a, data2=b, op=op)
    return t
