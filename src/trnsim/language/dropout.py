"""Random numbers in tile functions: dropout (with its destination-passing form) and
seeding the Vector Engine PRNG."""
from __future__ import annotations

from .. import isa as _isa
from .checks import need_tile
from .tiles import Result, new, out


def dropout_into(dst, x, rate):
    """dst = x with each element zeroed with probability `rate` (a constant or a [P, 1]
    tile) on the Vector Engine (nisa.dropout); kept elements are not rescaled. A dst of
    another dtype than x gets the result through a tile of x's dtype and a tensor_copy."""
    if dst.dtype == x.dtype:
        _isa.dropout(dst=out(dst), data=x, prob=rate)
        return
    t = new(dst.shape, x.dtype, "dropout")
    _isa.dropout(dst=t, data=x, prob=rate)
    _isa.tensor_copy(dst=out(dst), src=t)


def dropout(x, rate, dtype=None):
    """Zero each element with probability `rate` (a constant or a [P,1] tile) on the
    Vector Engine (nisa.dropout); kept elements are not rescaled."""
    need_tile("dropout", "x", x)
    result = Result(x.shape, dtype if dtype is not None else x.dtype, "dropout")
    dropout_into(result, x, rate)
    return result.tile


def random_seed(seed):
    """Seed the Vector Engine PRNG from a [1,1] 32-bit tile (nisa.set_rng_seed)."""
    need_tile("random_seed", "seed", seed)
    _isa.set_rng_seed(src_seeds=seed)


__all__ = ["dropout", "random_seed"]
