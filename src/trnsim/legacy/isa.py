"""`neuronxcc.nki.isa` (legacy): return-style instructions over trnsim.isa."""
from __future__ import annotations

from .. import isa as core
from ..numerics.dtypes import float32
from .language import as_access, psum, sbuf
from .ops import result_op


def _operand(x):
    from .tensor import Access, LTensor
    return as_access(x) if isinstance(x, (LTensor, Access)) else x


def nc_matmul(stationary, moving, is_stationary_onezero=False, is_moving_onezero=False,
              is_transpose=False, tile_position=(), tile_size=(), mask=None, **kwargs):
    """PSUM[M, N] (fp32) = stationary[K, M].T @ moving[K, N]; `psum += nc_matmul(...)`
    accumulates in place."""
    stationary, moving = _operand(stationary), _operand(moving)
    shape = (stationary.shape[-1], moving.shape[-1])
    return result_op(core.nc_matmul, shape, float32, psum, mask, stationary=stationary,
                     moving=moving, is_stationary_onezero=is_stationary_onezero,
                     is_moving_onezero=is_moving_onezero, is_transpose=is_transpose,
                     tile_position=tile_position, tile_size=tile_size)


def activation(op, data, bias=None, scale=1.0, mask=None, dtype=None, **kwargs):
    data = _operand(data)
    return result_op(core.activation, data.shape, dtype or data.dtype, sbuf, mask, op=op,
                     data=data, bias=_operand(bias), scale=_operand(scale))
