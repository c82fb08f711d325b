"""`neuronxcc.nki.isa` (legacy NKI 0.1): return-style instructions over trnsim.isa.

Every function here only translates: it works out the shape, dtype and buffer of the
result tile, turns legacy operands (tiles, indexed tiles, pending results, enums,
index expressions) into what the core instruction takes, and runs the core
`trnsim.isa` function, which holds every check, the numerics and the record.

- Return-style calls allocate their result (SBUF; PSUM for nc_matmul and a Tensor
  Engine nc_transpose, or `buffer=` where the legacy API allowed it) and run as soon as
  the kernel assigns them (`tile[...] = nisa.f(...)`, `psum[...] += nisa.nc_matmul(...)`)
  or uses them (see legacy/ops.py). `mask=` narrows the instruction; `dtype=` is the
  result's dtype (defaults as in the legacy docstrings).
- Calls with a destination operand (dma_copy, select_reduce, tensor_copy_predicated,
  nc_stream_shuffle, tensor_copy_dynamic_dst) and in-place extra outputs (reduce_res,
  dst_idx) write those tiles.
- Legacy enums (engine, reduce_cmd, dge_mode, oob_mode) are IntEnums as in neuronxcc;
  they are mapped onto the core enums here.
"""
from __future__ import annotations

import inspect
import math
from enum import IntEnum
from functools import partial

import numpy as np

from ..isa import without_handles as core  # (legacy calls discard the handle)
from ..isa import enums as core_enums
from ..isa.matmul import nc_matmul as _core_matmul
from ..machine import runtime
from ..machine.errors import NkiValidationError, UnsupportedError
from ..machine.tensor import NkiTensor
from ..numerics.dtypes import as_dtype, float32, uint32
from .indexing import Index, Predicate, first_axes
from .language import as_access, psum, sbuf
from .ops import Grid, Pending, flush, psum_written, result_op, run_masked, whole_view
from .tensor import Access, LTensor, as_predicate, front_padding


# -- enums and constants (IntEnum, values as in neuronxcc) --------------------------
class engine(IntEnum):
    """Neuron Device engines."""
    tensor = 1
    vector = 5
    scalar = 2
    gpsimd = 3
    sync = 6
    unknown = 0


class reduce_cmd(IntEnum):
    """Engine accumulator register commands."""
    idle = 0
    reset = 1
    reset_reduce = 3
    reduce = 2


class dge_mode(IntEnum):
    """Descriptor Generation Engine mode."""
    none = 0
    swdge = 1
    hwdge = 2
    unknown = 3


class oob_mode(IntEnum):
    """Out-of-bounds handling of indirect DMA accesses."""
    error = 0
    skip = 1


class nc_version(IntEnum):
    """NeuronCore version (gen2: Trn1/Inf2, gen3: Trn2)."""
    gen2 = 2
    gen3 = 3


class _dma(IntEnum):
    dma = 4


_Engine, _ReduceCmd, _DgeMode, _OobMode = engine, reduce_cmd, dge_mode, oob_mode

tensor_engine = engine.tensor
vector_engine = engine.vector
scalar_engine = engine.scalar
gpsimd_engine = engine.gpsimd
unknown_engine = engine.unknown
dma_engine = _dma.dma

FP32_MIN = float(np.finfo(np.float32).min)  # bit pattern 0xff7fffff


class _Fp32Min(float):
    """`fp32.min`: the most negative fp32 value, usable wherever a number is (repr
    `fp32.min`, the legacy spelling of range_select's default)."""

    __signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)])

    def __repr__(self):
        return "fp32.min"

    __str__ = float.__repr__

    def __call__(self, *_):
        return float(self)


_FP32_MIN = _Fp32Min(FP32_MIN)


class _Fp32Meta(type):
    @property
    def min(cls):  # noqa: A003 - `nl.fp32.min` / `nisa.fp32.min` on the class
        return _FP32_MIN


class fp32(metaclass=_Fp32Meta):
    """FP32 constants: `fp32.min` is the minimum (most negative) fp32 value."""

    @property
    def min(self):  # noqa: A003
        """FP32 bit pattern 0xff7fffff, the minimum (most negative) FP32 value."""
        return _FP32_MIN


# -- translation helpers ----------------------------------------------------------
def _enum(value, legacy_cls, core_cls, param: str, extra=None):
    """A core enum member from a legacy IntEnum member, a core member, or a name. (Each
    legacy class goes with one core class and one `extra`: a legacy member's core
    member is worked out once.)"""
    if type(value) is legacy_cls:
        members = _CORE_MEMBERS.get(legacy_cls)
        if members is None:
            members = _CORE_MEMBERS[legacy_cls] = {}
        member = members.get(value)
        if member is None:
            member = members[value] = _core_member(value, legacy_cls, core_cls, param, extra)
        return member
    return _core_member(value, legacy_cls, core_cls, param, extra)


_CORE_MEMBERS: dict = {}  # legacy enum class -> {its member: the core member _enum gives}


def _core_member(value, legacy_cls, core_cls, param: str, extra):
    """`_enum(value, ...)`, worked out."""
    if isinstance(value, core_cls):
        return value
    if extra and value in extra:
        return extra[value]
    if isinstance(value, legacy_cls) or (isinstance(value, (int, np.integer))
                                          and not isinstance(value, bool)
                                          and int(value) in legacy_cls._value2member_map_):
        return core_cls[legacy_cls(int(value)).name]
    if isinstance(value, str) and value in core_cls.__members__:
        return core_cls[value]
    names = ", ".join(f"nisa.{legacy_cls.__name__}.{m}" for m in legacy_cls.__members__)
    raise NkiValidationError(f"{param}={value!r} is not a {legacy_cls.__name__} member; use "
                             f"one of {names}")


def _engine(value):
    if value is None:
        return core_enums.engine.unknown
    return _enum(value, _Engine, core_enums.engine, "engine",
                 {dma_engine: core_enums.engine.dma})


def _reduce_cmd(value):
    return _enum(value, _ReduceCmd, core_enums.reduce_cmd, "reduce_cmd")


def _t(x):
    """A tensor operand as an Access (whole tile or indexed); others pass through."""
    if type(x) is Access:
        return x
    if isinstance(x, (LTensor, Access)):
        return as_access(x)
    return x


def _dtype(dtype, default):
    return as_dtype(default if dtype is None else dtype)


def _buffer(kwargs, default=sbuf):
    return kwargs.get("buffer") or default


def _name(kwargs) -> str:
    return kwargs.get("name") or ""


def _no_dtype_change(dtype, dst, op: str):
    """`dtype=` on a call that writes a given dst: accepted when it is dst's dtype."""
    if dtype is not None and as_dtype(dtype) != dst.dtype:
        raise NkiValidationError(f"dtype={as_dtype(dtype)} differs from dst "
                                 f"({dst.dtype}[{', '.join(map(str, dst.shape))}]); "
                                 f"{op} writes dst's dtype", op=op)


def _promote(a, b):
    from ..language.checks import promote
    return promote(as_dtype(a), as_dtype(b))


def _spans(grid: Grid, x) -> list[tuple[int, int]]:
    """The mask-narrowed range of each grid position of operand `x`."""
    if isinstance(x, Access):
        if x.whole and not grid.narrowed and x.operand_mask is None:
            return [(0, n) for n in x.shape]  # (one axis per dim, none narrowed)
        shape = x.shape
        pattern = x.pattern()
        if pattern is not None:
            first = pattern.first
        else:
            first = first_axes([idx.terms for idx in x.indices])[0]
        out = []
        narrowed = grid.narrowed or x.operand_mask is not None
        for p, n in enumerate(shape):
            a = first.get(p)
            if a is None:
                out.append((0, n))
                continue
            if not narrowed:  # (what grid.span gives without a mask)
                out.append((0, a.size))
                continue
            lo, hi = grid.span(p, a.size, a)
            if x.operand_mask is None:
                out.append((lo, hi))
            else:  # and its operand mask
                out.append(x.narrow({a: (lo, hi)}).get(a, (lo, hi)))
        return out
    return [grid.span(d, n) for d, n in enumerate(x.shape)]


def _operand_masked(x) -> bool:
    return isinstance(x, Access) and x.operand_mask is not None


def _view_spans(x, spans) -> NkiTensor:
    """`x` (the destination Access) viewed over the given per-position ranges. A range
    over a whole axis is left out: what a view takes by default (a whole tile then
    takes Access.view's shortcut)."""
    if isinstance(x, Access):
        if x.operand_mask is None and _one_axis_per_dim(x) and \
                all(lo == 0 and hi == n for (lo, hi), n in zip(spans, x.shape)):
            return x.view({})  # (every range whole: none left in)
        front = front_padding(x)
        return x.view({a: spans[p] for idx in x.indices for a in idx.terms
                       if (p := a.position + front) < len(spans) and spans[p] != (0, a.size)})
    if isinstance(x, LTensor):
        x = x.view_all()
    return x[tuple(slice(lo, hi) for lo, hi in spans)]


def _one_axis_per_dim(x: Access) -> bool:
    """Whether the indices of `x` are one axis per dim of its shape, in order, each of
    its dim's size: a whole access (LTensor.full), or one of unit-step slices made with
    its view (LTensor.__getitem__'s plain key in range, `ps[:, 0:512]`)."""
    if x.whole:
        return True
    key = x.plain_key
    if key is None or x._view is None:
        return False
    for k in key:
        if type(k) is not slice:
            return False
    return True


def _run(core_fn, dst, mask, build, accumulate=False):
    """Like ops.run_masked, with `build(grid, dst) -> kwargs` (including `dst`) for
    instructions whose operands do not line up with the result position by position."""
    run = runtime.active_run()
    if run.legacy_pending is not None:
        flush(run)
    grid = Grid(dst.shape, mask) if mask is not None else Grid.unmasked(dst.shape)
    if grid.empty:
        return
    kwargs = build(grid, dst)
    if kwargs is None:
        return
    if accumulate:
        kwargs["accumulate"] = True
    run.dst_mask = grid.dst_mask() if grid.residual is not None else None
    try:
        core_fn(**kwargs)
    finally:
        run.dst_mask = None


def _deferred(core_fn, shape, dtype, buffer, mask, build, name="", accumulates=False):
    """A Pending result whose instruction runs through `_run(..., build)`."""
    if mask is not None:
        mask = as_predicate(mask)

    def execute(dst, accumulate):
        _run(core_fn, dst, mask, build, accumulate)

    return Pending(execute, tuple(map(int, shape)), as_dtype(dtype), buffer, name,
                   accumulates)


def _cast_after(core_fn, buffer, kwargs, space=None):
    """Run `core_fn(**kwargs)` into a temporary of its operands' dtype (in `buffer`) when
    the result's dtype differs (the legacy API then inserts a cast), or when the result
    is not in the memory `space` the instruction must write (a PSUM result assigned to
    an SBUF tile); returns the kwargs of the `tensor_copy` from the temporary into the
    result, or `kwargs` unchanged."""
    dst, src_dtype = kwargs["dst"], kwargs.pop("_src_dtype")
    if dst.dtype == src_dtype and space in (None, dst.space):
        return kwargs
    tmp = runtime.active_run().new_tensor(dst.shape, src_dtype, buffer,
                                          f"{core_fn.__name__}_tmp")
    core_fn(**{**kwargs, "dst": tmp})
    return dict(dst=dst, src=tmp, _cast=True)


def _maybe_cast(core_fn):
    """core_fn, or a tensor_copy for the kwargs `_cast_after` made."""
    def run(_cast=False, **kwargs):
        (core.tensor_copy if _cast else core_fn)(**kwargs)
    return run


def _via_sbuf(view, what: str):
    """A PSUM operand of an instruction whose engine reads SBUF only (the Tensor Engine's
    nc_matmul operands, GpSimd's affine_select), staged through an SBUF copy of the same
    dtype (bit-exact; recorded as its own tensor_copy). The legacy front end accepted
    PSUM tiles there -- the SDK's flash-attention kernels pass a PSUM matmul result
    straight to nisa.affine_select and a Tensor Engine nc_transpose result (PSUM) to
    nc_matmul -- while the engines cannot read PSUM, so the copy is the translation (as
    a PSUM result assigned to an SBUF tile goes through a tensor_copy)."""
    if not isinstance(view, NkiTensor) or view.space != "psum":
        return view
    tmp = runtime.active_run().new_tensor(view.shape, view.dtype, sbuf, f"{what}_sbuf")
    core.tensor_copy(dst=tmp, src=view)
    return tmp


def _affine_terms(expr: Index, shape, what: str):
    """Per grid position, the coefficient of `expr` (an affine index over the grid of
    `shape`), and the constant part: expr = const + sum_p coef[p] * j_p."""
    coef = [0] * len(shape)
    const = expr.const
    for a, c in expr.terms.items():
        if a.position >= len(shape):
            raise NkiValidationError(f"{what}: index axis {a!r} lies outside the "
                                     f"{len(shape)}-D tile")
        if a.size == shape[a.position]:
            coef[a.position] += c
            const += c * a.start
        elif a.size == 1:
            const += c * a.start
        else:
            raise NkiValidationError(f"{what}: an index axis of size {a.size} at position "
                                     f"{a.position} does not match the tile shape {tuple(shape)}")
    return coef, const


def _pattern(coef, const, spans, view_shape):
    """Core (pattern, offset, channel_multiplier) for expr over a narrowed view."""
    offset = const + sum(c * lo for c, (lo, _) in zip(coef, spans))
    pattern = [[coef[p], view_shape[p]] for p in range(1, len(view_shape))] or [[0, 1]]
    return pattern, int(offset), int(coef[0])


def _as_2d(shape):
    shape = tuple(int(s) for s in shape)
    return shape if len(shape) >= 2 else (1,) * (2 - len(shape)) + shape


# -- Tensor Engine -----------------------------------------------------------------
def nc_matmul(stationary, moving, *, is_stationary_onezero=False, is_moving_onezero=False,
              is_transpose=False, tile_position=(), tile_size=(), mask=None, **kwargs):
    """PSUM[M, N] (fp32) = stationary[K, M].T @ moving[K, N]; `psum[...] += nc_matmul(...)`
    accumulates in place. The mask narrows each operand axis it names (or, by position,
    an operand axis of its size: K, M or N); the result covers the narrowed M x N."""
    perf_mode = kwargs.get("perf_mode", core_enums.matmul_perf_mode.none)
    if isinstance(perf_mode, str) and perf_mode.startswith("double_row"):
        perf_mode = core_enums.matmul_perf_mode.double_row
    if mask is None:
        s_core, m_core = _whole_tile_core(stationary), _whole_tile_core(moving)
        if s_core is not None and m_core is not None:
            return _whole_matmul(s_core, m_core, (s_core.shape[-1], m_core.shape[-1]),
                                 as_dtype(kwargs.get("dtype") or float32),
                                 kwargs.get("name") or "",
                                 (is_stationary_onezero, is_moving_onezero, is_transpose,
                                  tile_position, tile_size, perf_mode))
    stationary, moving = _t(stationary), _t(moving)
    s_shape, m_shape = stationary.shape, moving.shape  # (an operand's shape never changes)
    shape = (s_shape[-1], m_shape[-1])

    dtype, name = kwargs.get("dtype") or float32, kwargs.get("name") or ""
    if mask is None and not _operand_masked(stationary) and not _operand_masked(moving):
        return _whole_matmul(stationary, moving, shape, as_dtype(dtype), name,
                             (is_stationary_onezero, is_moving_onezero, is_transpose,
                              tile_position, tile_size, perf_mode))

    def build(grid, dst):
        if grid.residual is not None:
            raise NkiValidationError("nc_matmul: the mask must constrain each axis on its "
                                     "own (a bound on one index per clause)", op="nc_matmul")
        if grid.narrowed or _operand_masked(stationary) or _operand_masked(moving):
            s_spans, m_spans = _spans(grid, stationary), _spans(grid, moving)
            for lo, hi in s_spans + m_spans:
                if hi <= lo:
                    return None
            dspans = [s_spans[-1]] + [(0, n) for n in dst.shape[1:-1]] + [m_spans[-1]]
            dview = _view_spans(dst, dspans)
        else:
            if 0 in s_shape or 0 in m_shape:
                return None
            dview = _whole_matmul_dst(dst, shape)
        return dict(dst=dview,
                    stationary=_via_sbuf(grid.view(stationary), "stationary"),
                    moving=_via_sbuf(grid.view(moving), "moving"),
                    is_stationary_onezero=is_stationary_onezero,
                    is_moving_onezero=is_moving_onezero, is_transpose=is_transpose,
                    tile_position=tile_position, tile_size=tile_size, perf_mode=perf_mode)

    return _deferred(_matmul, shape, dtype, psum, mask, build, name, accumulates=True)


def _whole_tile_core(x) -> NkiTensor | None:
    """The core view of `_t(x)` with no mask when `x` is a plain tile or a pending
    result (run first, as `_t` runs it) of 2 dims or more taken whole: its core (what
    `Access.view` gives of its whole access); else None."""
    if type(x) is LTensor:
        core = x.core
        return core if core.ndim > 1 else None
    if type(x) is Pending:
        core = x.core
        return core if core.ndim > 1 and x.shape == core.shape else None
    return None


def _whole_matmul(stationary, moving, shape: tuple, dtype, name: str, settings: tuple):
    """The pending result of an unmasked nc_matmul (no mask, no operand mask: the usual
    `psum[...] += nc_matmul(a, b)`); `settings`: the flags and modes after `moving` in
    the core nc_matmul's parameters, up to perf_mode (with accumulate left out)."""
    return Pending(partial(_run_whole_matmul, stationary, moving, shape, settings),
                   tuple(map(int, shape)), dtype, psum, name, True)


def _run_whole_matmul(stationary, moving, shape, settings, dst, accumulate):
    """What `_run(_matmul, dst, None, build, accumulate)` does for an unmasked
    nc_matmul (nc_matmul's build with every span whole), each view made once."""
    run = runtime.active_run()
    if run.legacy_pending is not None:
        flush(run)
    if min(dst.shape, default=1) <= 0 or 0 in stationary.shape or 0 in moving.shape:
        return  # (an empty grid; build's None)
    dview = _whole_matmul_dst(dst, shape)
    s_view = _via_sbuf(whole_view(stationary), "stationary")
    m_view = _via_sbuf(whole_view(moving), "moving")
    s_onezero, m_onezero, transpose, tile_position, tile_size, perf_mode = settings
    if dview.space != "psum":
        _matmul(dview, accumulate, stationary=s_view, moving=m_view,
                is_stationary_onezero=s_onezero, is_moving_onezero=m_onezero,
                is_transpose=transpose, tile_position=tile_position, tile_size=tile_size,
                perf_mode=perf_mode)
        return
    _core_matmul(dview, s_view, m_view, s_onezero, m_onezero, transpose,
                 psum_written(dview) if accumulate else None, tile_position, tile_size,
                 perf_mode)


def _whole_matmul_dst(dst, shape: tuple) -> NkiTensor:
    """The view of matmul destination `dst` (an Access or a tile) of result `shape`
    [M, N] with no mask: what `_view_spans` gives with every span whole (each the size
    of an axis the shape has, the last one the shape's last)."""
    dshape = dst.shape
    if isinstance(dst, Access) and dst.whole and dst.operand_mask is None \
            and len(dshape) > 1 and dshape[0] == shape[0] and dshape[-1] == shape[1]:
        return dst.view({})  # (dst's spans all whole)
    return _view_spans(dst, [(0, shape[0])] + [(0, n) for n in dshape[1:-1]]
                       + [(0, shape[1])])


def _matmul(dst, accumulate=False, **kwargs):
    """nc_matmul into dst; a result assigned (`=` or `+=`) to a tile outside PSUM goes
    through a PSUM tile and a tensor_copy (or a tensor_tensor add). (The core function
    itself, not its `core` wrapper: kwargs never hold the `dtype` the wrapper checks.)"""
    if dst.space == "psum":
        _core_matmul(dst=dst, accumulate=psum_written(dst) if accumulate else None, **kwargs)
        return
    tmp = runtime.active_run().new_tensor(dst.shape, "float32", psum, "nc_matmul_psum")
    _core_matmul(dst=tmp, **kwargs)
    if accumulate:
        core.tensor_tensor(dst=dst, data1=dst, data2=tmp, op="add")
    else:
        core.tensor_copy(dst=dst, src=tmp)


def nc_transpose(data, *, mask=None, dtype=None, engine=engine.unknown, **kwargs):
    """[F, P] = transpose of data[P, F] (free axes flattened), on the Tensor Engine (result
    in PSUM; data <= 128 x 128 in SBUF) or the Vector Engine (result in SBUF; <= 32 x 32).
    A different `dtype` adds a tensor_copy that casts the transposed tile."""
    data = _t(data)
    eng = _engine(engine)
    if eng is core_enums.engine.unknown:
        on_sbuf = data.buffer == sbuf
        eng = core_enums.engine.tensor if on_sbuf else core_enums.engine.vector
    p, f = data.shape[0], math.prod(data.shape[1:])
    out_dtype = _dtype(dtype, data.dtype)
    buffer = _buffer(kwargs, psum if eng is core_enums.engine.tensor else sbuf)
    if mask is None and not _operand_masked(data):
        return Pending(partial(_run_whole_transpose, data, eng), (int(f), int(p)), out_dtype,
                       buffer, _name(kwargs))

    def build(grid, dst):
        spans = _spans(grid, data)
        if len(spans) > 2 and any(s != (0, n) for s, n in zip(spans[1:], data.shape[1:])):
            raise NkiValidationError("nc_transpose: a mask may narrow the free axis of a "
                                     "2-D tile only (free axes are flattened)",
                                     op="nc_transpose")
        if any(hi <= lo for lo, hi in spans):
            return None
        fspan = spans[1] if len(spans) == 2 else (0, f)
        src = grid.view(data)
        pe = eng is core_enums.engine.tensor
        return _cast_after(core.nc_transpose, psum if pe else sbuf,
                           dict(dst=_view_spans(dst, [fspan, spans[0]]), data=src, engine=eng,
                                _src_dtype=src.dtype), "psum" if pe else None)

    return _deferred(_maybe_cast(core.nc_transpose), (f, p), out_dtype, buffer, mask, build,
                     _name(kwargs))


def _run_whole_transpose(data, eng, dst, accumulate):
    """What `_run` does for an unmasked nc_transpose (its build with every span whole:
    none narrowed, so none empty unless a dim of data is)."""
    run = runtime.active_run()
    if run.legacy_pending is not None:
        flush(run)
    if min(dst.shape, default=1) <= 0 or 0 in data.shape:
        return  # (an empty grid, or build's None)
    src = whole_view(data)
    pe = eng is core_enums.engine.tensor
    p, f = data.shape[0], math.prod(data.shape[1:])
    kwargs = _cast_after(core.nc_transpose, psum if pe else sbuf,
                         dict(dst=_view_spans(dst, [(0, f), (0, p)]),
                              data=src, engine=eng, _src_dtype=src.dtype),
                         "psum" if pe else None)
    run.dst_mask = None
    _maybe_cast(core.nc_transpose)(**kwargs)


# -- Scalar Engine -------------------------------------------------------------------
def activation(op, data, *, bias=None, scale=1.0, reduce_op=None, reduce_res=None,
               reduce_cmd=reduce_cmd.idle, mask=None, dtype=None, **kwargs):
    """op(data * scale + bias) on the Scalar Engine; reduce_res (a [P, 1] tile) receives
    the accumulator registers as set by reduce_cmd."""
    data = _t(data)
    return result_op(core.activation, data.shape, _dtype(dtype, data.dtype), _buffer(kwargs),
                     mask, _name(kwargs), op=op, data=data, bias=_t(bias), scale=_t(scale),
                     reduce_op=reduce_op, reduce_res=_t(reduce_res),
                     reduce_cmd=_reduce_cmd(reduce_cmd))


def activation_reduce(op, data, *, reduce_op, reduce_res, bias=None, scale=1.0, mask=None,
                      dtype=None, **kwargs):
    """activation, and reduce_res = reduce_op over the free axes of its result."""
    data = _t(data)
    return result_op(core.activation_reduce, data.shape, _dtype(dtype, data.dtype),
                     _buffer(kwargs), mask, _name(kwargs), op=op, data=data,
                     reduce_op=reduce_op, reduce_res=_t(reduce_res), bias=_t(bias),
                     scale=_t(scale))


# -- Vector / GpSimd / Scalar elementwise ------------------------------------------------
def tensor_tensor(data1, data2, op, *, dtype=None, mask=None, engine=engine.unknown, **kwargs):
    """data1 op data2, elementwise. A tile with one element per partition ([P, 1]) is
    broadcast along the free axes of the other (a stride-0 access pattern): the legacy
    docs point to tensor_scalar for free-axis broadcasting as the *faster* way, and SDK
    kernels pass a [P, 1] scale tile to tensor_tensor."""
    data1, data2 = _t(data1), _t(data2)
    out = _dtype(dtype, _promote(data1.dtype, data2.dtype))
    s1, s2 = tuple(data1.shape), tuple(data2.shape)
    if s1 == s2 or s1[0] != s2[0] or (math.prod(s1[1:]) != 1 and math.prod(s2[1:]) != 1):
        return result_op(core.tensor_tensor, data1.shape, out, _buffer(kwargs), mask,
                         _name(kwargs), data1=data1, data2=data2, op=op,
                         engine=_engine(engine))
    shape = s2 if math.prod(s1[1:]) == 1 else s1

    def build(grid, dst):
        view = grid.view(dst)
        return dict(dst=view, data1=_free_broadcast(grid.view(data1), view.shape),
                    data2=_free_broadcast(grid.view(data2), view.shape), op=op,
                    engine=_engine(engine))

    return _deferred(core.tensor_tensor, shape, out, _buffer(kwargs), mask, build,
                     _name(kwargs))


def _free_broadcast(view, shape):
    """A [P, 1, ...] view repeated along the free axes of `shape` (stride 0)."""
    shape = tuple(shape)
    if not isinstance(view, NkiTensor) or tuple(view.shape) == shape:
        return view
    return NkiTensor(shape, view.dtype, view.storage, view.buffer, view.name,
                     strides=(view.strides[0],) + (0,) * (len(shape) - 1),
                     offset=view.offset, indirect=view.dyn)


def tensor_scalar(data, op0, operand0, reverse0=False, op1=None, operand1=None,
                  reverse1=False, *, dtype=None, mask=None, engine=engine.unknown, **kwargs):
    data = _t(data)
    return result_op(core.tensor_scalar, data.shape, _dtype(dtype, data.dtype),
                     _buffer(kwargs), mask, _name(kwargs), data=data, op0=op0,
                     operand0=_t(operand0), reverse0=reverse0, op1=op1,
                     operand1=_t(operand1), reverse1=reverse1, engine=_engine(engine))


def scalar_tensor_tensor(*, data, op0, operand0, op1, operand1, reverse0=False,
                         reverse1=False, dtype=None, mask=None, **kwargs):
    data = _t(data)
    return result_op(core.scalar_tensor_tensor, data.shape, _dtype(dtype, data.dtype),
                     _buffer(kwargs), mask, _name(kwargs), data=data, op0=op0,
                     operand0=_t(operand0), op1=op1, operand1=_t(operand1),
                     reverse0=reverse0, reverse1=reverse1)


def tensor_scalar_reduce(*, data, op0, operand0, reduce_op, reduce_res, reverse0=False,
                         dtype=None, mask=None, **kwargs):
    data = _t(data)
    return result_op(core.tensor_scalar_reduce, data.shape, _dtype(dtype, data.dtype),
                     _buffer(kwargs), mask, _name(kwargs), data=data, op0=op0,
                     operand0=_t(operand0), reduce_op=reduce_op,
                     reduce_res=_t(reduce_res), reverse0=reverse0)


def tensor_tensor_scan(data0, data1, initial, op0, op1, reverse0=False, reverse1=False, *,
                       dtype=None, mask=None, **kwargs):
    data0, data1 = _t(data0), _t(data1)
    out = _dtype(dtype, _promote(data0.dtype, data1.dtype))
    return result_op(core.tensor_tensor_scan, data0.shape, out, _buffer(kwargs), mask,
                     _name(kwargs), data0=data0, data1=data1, initial=_t(initial),
                     op0=op0, op1=op1, reverse0=reverse0, reverse1=reverse1)


def reciprocal(data, *, dtype=None, mask=None, **kwargs):
    data = _t(data)
    return result_op(core.reciprocal, data.shape, _dtype(dtype, data.dtype), _buffer(kwargs),
                     mask, _name(kwargs), data=data)


def tensor_copy(src, *, mask=None, dtype=None, engine=engine.unknown, **kwargs):
    src = _t(src)
    return result_op(core.tensor_copy, src.shape, _dtype(dtype, src.dtype), _buffer(kwargs),
                     mask, _name(kwargs), src=src, engine=_engine(engine))


def tensor_copy_dynamic_src(src, *, mask=None, dtype=None, engine=engine.unknown, **kwargs):
    """A copy of `src`, an on-chip tile indexed at a runtime offset (a 1-element SBUF
    tile in its index expression)."""
    src = _t(src)
    return result_op(core.tensor_copy, src.shape, _dtype(dtype, src.dtype), _buffer(kwargs),
                     mask, _name(kwargs), src=src, engine=_engine(engine))


def tensor_copy_dynamic_dst(*, dst, src, mask=None, dtype=None, engine=engine.unknown,
                            **kwargs):
    """dst (indexed at a runtime offset) = src."""
    dst, src = _t(dst), _t(src)
    _no_dtype_change(dtype, dst, "tensor_copy_dynamic_dst")
    run_masked(core.tensor_copy, dst, mask, src=src, engine=_engine(engine))


def tensor_copy_predicated(*, src, dst, predicate, reverse_pred=False, mask=None, dtype=None,
                           **kwargs):
    """dst = src where predicate is nonzero (zero with reverse_pred); dst keeps its other
    elements."""
    dst = _t(dst)
    _no_dtype_change(dtype, dst, "tensor_copy_predicated")
    run_masked(core.tensor_copy_predicated, dst, mask, src=_t(src), predicate=_t(predicate),
               reverse_pred=reverse_pred)


def memset(shape, value, dtype, *, mask=None, engine=engine.unknown, **kwargs):
    """A new tile of `shape` (the first dim is the partition dim; nl.par_dim is ignored)
    filled with `value`."""
    shape = _as_2d(int(s) for s in shape)
    return result_op(core.memset, shape, as_dtype(dtype), _buffer(kwargs), mask,
                     _name(kwargs), value=value, engine=_engine(engine))


def iota(expr, dtype, *, mask=None, **kwargs):
    """A new SBUF tile holding the values of `expr`, an affine expression of nl.arange /
    nl.mgrid indices (GpSimd, int32 arithmetic, cast to dtype)."""
    if isinstance(expr, Predicate) or not isinstance(expr, (Index, int, np.integer)):
        raise NkiValidationError(f"iota: expr must be an affine expression of nl.arange() "
                                 f"indices, got {expr!r}", op="iota")
    expr = Index.of(expr)
    shape = _as_2d(expr.shape or (1, 1))
    coef, const = _affine_terms(expr, shape, "iota")

    def build(grid, dst):
        view = grid.view(dst)
        pattern, offset, cm = _pattern(coef, const, [grid.pos[p] for p in range(len(shape))],
                                       view.shape)
        return dict(dst=view, pattern=pattern, offset=offset, channel_multiplier=cm)

    return _deferred(core.iota, shape, as_dtype(dtype), _buffer(kwargs), mask, build,
                     _name(kwargs))


def affine_select(pred, on_true_tile, on_false_value, *, mask=None, dtype=None, **kwargs):
    """on_true_tile where the affine predicate holds (one comparison of nl.arange
    expressions, e.g. `i_f < i_p`), else on_false_value (fp32), on GpSimd."""
    tile = _t(on_true_tile)
    if isinstance(pred, Index):
        pred = pred > 0
    if not isinstance(pred, Predicate) or len(pred.clauses) != 1:
        raise NkiValidationError(
            "affine_select: pred must be one affine comparison of nl.arange() indices (e.g. "
            "i_f < i_p); a predicate combined with & is not supported, use nl.where",
            op="affine_select")
    (expr, cmp), = pred.clauses
    cmp_op = {"<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal"}[cmp]
    shape = tile.shape
    coef, const = _affine_terms(expr, shape, "affine_select")

    def build(grid, dst):
        view = grid.view(dst)
        pattern, offset, cm = _pattern(coef, const, [grid.pos[p] for p in range(len(shape))],
                                       view.shape)
        return dict(dst=view, on_true_tile=_via_sbuf(grid.view(tile), "on_true_tile"),
                    on_false_value=on_false_value, pattern=pattern, channel_multiplier=cm,
                    offset=offset, cmp_op=cmp_op)

    return _deferred(core.affine_select, shape, _dtype(dtype, tile.dtype), _buffer(kwargs),
                     mask, build, _name(kwargs))


def range_select(*, on_true_tile, comp_op0, comp_op1, bound0, bound1,
                 reduce_cmd=reduce_cmd.idle, reduce_res=None, reduce_op=np.amax,
                 range_start=0, on_false_value=fp32.min, mask=None, dtype=None, **kwargs):
    """on_true_tile where comp_op0(j, bound0) and comp_op1(j, bound1) for the free index
    j + range_start, else fp32.min; max-reduced into the Vector Engine accumulators as
    reduce_cmd says, read out into reduce_res (NeuronCore-v3+)."""
    tile = _t(on_true_tile)
    bound0, bound1, reduce_res = _t(bound0), _t(bound1), _t(reduce_res)
    cmd = _reduce_cmd(reduce_cmd)

    def build(grid, dst):
        spans = _spans(grid, tile)
        start = range_start
        if len(spans) == 2:
            start = range_start + spans[1][0]
        elif any(s != (0, n) for s, n in zip(spans[1:], tile.shape[1:])):
            raise NkiValidationError("range_select: a mask may narrow the free axis of a 2-D "
                                     "on_true_tile only", op="range_select")
        return dict(dst=grid.view(dst), on_true_tile=grid.view(tile), comp_op0=comp_op0,
                    comp_op1=comp_op1, bound0=grid.view(bound0), bound1=grid.view(bound1),
                    reduce_cmd=cmd, reduce_res=grid.view(reduce_res), reduce_op=reduce_op,
                    range_start=start, on_false_value=float(on_false_value))

    return _deferred(core.range_select, tile.shape, _dtype(dtype, tile.dtype),
                     _buffer(kwargs), mask, build, _name(kwargs))


def select_reduce(*, dst, predicate, on_true, on_false, reduce_res=None,
                  reduce_cmd=reduce_cmd.idle, reduce_op=np.amax, reverse_pred=False,
                  mask=None, dtype=None, **kwargs):
    """dst = on_true where predicate is nonzero (zero with reverse_pred), else on_false (a
    constant or [P, 1] tile), optionally max-reduced into reduce_res (Vector Engine)."""
    dst = _t(dst)
    _no_dtype_change(dtype, dst, "select_reduce")
    run_masked(core.select_reduce, dst, mask, predicate=_t(predicate), on_true=_t(on_true),
               on_false=_t(on_false), reduce_res=_t(reduce_res),
               reduce_cmd=_reduce_cmd(reduce_cmd), reduce_op=reduce_op,
               reverse_pred=reverse_pred)


def dropout(data, prob, *, mask=None, dtype=None, **kwargs):
    """data with each element zeroed with probability prob (a constant or a [P, 1] tile);
    a float result of another dtype is cast after the dropout."""
    data, prob = _t(data), _t(prob)

    def build(grid, dst):
        src = grid.view(data)
        return _cast_after(core.dropout, sbuf, dict(dst=grid.view(dst), data=src,
                                                    prob=grid.view(prob),
                                                    _src_dtype=src.dtype))

    return _deferred(_maybe_cast(core.dropout), data.shape, _dtype(dtype, data.dtype),
                     _buffer(kwargs), mask, build, _name(kwargs))


# -- reductions and statistics -------------------------------------------------------
def tensor_reduce(op, data, axis, *, mask=None, dtype=None, negate=False, keepdims=False,
                  **kwargs):
    """Reduce the trailing free axes `axis` of data (Vector Engine); the result keeps the
    reduced axes as size 1 with keepdims (and is at least [P, 1])."""
    data = _t(data)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    nd = len(data.shape)
    axes_n = {int(a) + nd if int(a) < 0 else int(a) for a in axes}
    shape = tuple(1 if d in axes_n else n for d, n in enumerate(data.shape)
                  if keepdims or d not in axes_n)
    shape = shape + (1,) * (2 - len(shape))
    return result_op(core.tensor_reduce, shape,
                     _dtype(dtype, data.dtype), _buffer(kwargs), mask, _name(kwargs),
                     op=op, data=data, axis=axis, negate=negate, keepdims=keepdims)


def tensor_partition_reduce(op, data, *, mask=None, dtype=None, **kwargs):
    """[1, F...] = op over the partitions of data (GpSimd)."""
    data = _t(data)
    return result_op(core.tensor_partition_reduce, (1,) + tuple(data.shape[1:]),
                     _dtype(dtype, data.dtype), _buffer(kwargs), mask, _name(kwargs),
                     op=op, data=data)


def bn_stats(data, *, mask=None, dtype=None, **kwargs):
    """[P, 6]: count, mean, variance*count of the even then the odd elements."""
    data = _t(data)
    return result_op(core.bn_stats, (data.shape[0], 6), _dtype(dtype, data.dtype),
                     _buffer(kwargs), mask, _name(kwargs), data=data)


def bn_aggr(data, *, mask=None, dtype=None, **kwargs):
    """[P, 2]: mean and variance from bn_stats outputs."""
    data = _t(data)
    return result_op(core.bn_aggr, (data.shape[0], 2), _dtype(dtype, data.dtype),
                     _buffer(kwargs), mask, _name(kwargs), data=data)


def max8(*, src, mask=None, dtype=None, **kwargs):
    """[P, 8]: the 8 largest values of each partition, descending."""
    src = _t(src)
    return result_op(core.max8, (src.shape[0], 8), _dtype(dtype, src.dtype), _buffer(kwargs),
                     mask, _name(kwargs), src=src)


def nc_find_index8(*, data, vals, mask=None, dtype=None, **kwargs):
    """[P, 8] (uint32 by default): the index of the first occurrence of each of the 8
    vals in each partition of data (the mask applies to data)."""
    data, vals = _t(data), _t(vals)
    return result_op(core.nc_find_index8, (data.shape[0], 8), _dtype(dtype, uint32),
                     _buffer(kwargs), mask, _name(kwargs), data=data, vals=vals)


def nc_match_replace8(*, data, vals, imm, dst_idx=None, mask=None, dtype=None, **kwargs):
    """data with the first occurrence of each of the 8 vals replaced by imm; dst_idx (if
    given) receives the matched indices."""
    data = _t(data)
    return result_op(core.nc_match_replace8, data.shape, _dtype(dtype, data.dtype),
                     _buffer(kwargs), mask, _name(kwargs), data=data, vals=_t(vals),
                     imm=imm, dst_idx=_t(dst_idx))


# -- data movement -------------------------------------------------------------------
def nc_stream_shuffle(src, dst, shuffle_mask, *, dtype=None, mask=None, **kwargs):
    """Per 32-partition quadrant, dst partition i = src partition shuffle_mask[i] (255:
    unmodified). The mask applies to dst: masked-off partitions keep their values."""
    src, dst = _t(src), _t(dst)
    _no_dtype_change(dtype, dst, "nc_stream_shuffle")
    smask = list(shuffle_mask)

    def build(grid, d):
        spans = _spans(grid, d)
        plo, phi = spans[0]
        n = d.shape[0]
        sm = list(smask)
        if (plo, phi) != (0, n):
            if n > 32:
                raise NkiValidationError("nc_stream_shuffle: a mask on the partitions of a dst "
                                         "of more than 32 partitions is not supported",
                                         op="nc_stream_shuffle")
            sm = [m if plo <= i < phi else 255 for i, m in enumerate(sm)]
        dview = _view_spans(d, [(0, n)] + spans[1:])
        sspans = _spans(grid, src)
        sview = _view_spans(src, [(0, src.shape[0])] + sspans[1:])
        return dict(dst=dview, src=sview, shuffle_mask=sm)

    _run(core.nc_stream_shuffle, dst, as_predicate(mask), build)


def local_gather(src_buffer, index, num_elem_per_idx=1, num_valid_indices=None, *,
                 mask=None):
    """Per GpSimd core (16 partitions), gather num_elem_per_idx elements at each index
    (an element offset into the partition's flattened free axes) from its partitions.
    Result: [P, *index free dims, 16, num_elem_per_idx] with every index of each core's
    16-partition slice (read partition first), or [P, num_valid_indices,
    num_elem_per_idx]."""
    src_buffer, index = _t(src_buffer), _t(index)
    per_core = 16 * math.prod(index.shape[1:])
    if num_valid_indices is None or num_valid_indices == per_core:
        shape = (src_buffer.shape[0], *index.shape[1:], 16, num_elem_per_idx)
    else:
        shape = (src_buffer.shape[0], int(num_valid_indices), num_elem_per_idx)
    return result_op(core.local_gather, shape, src_buffer.dtype, sbuf, mask, "",
                     src_buffer=src_buffer, index=index, num_elem_per_idx=num_elem_per_idx,
                     num_valid_indices=num_valid_indices)


def dma_copy(*, dst, src, mask=None, dst_rmw_op=None, oob_mode=oob_mode.error,
             dge_mode=dge_mode.unknown):
    """dst = src on a DMA queue (a cast when the dtypes differ); with dst_rmw_op=np.add,
    dst = dst + src (read-modify-write, e.g. an indirect scatter-add)."""
    dst, src = _t(dst), _t(src)
    oob = _enum(oob_mode, _OobMode, core_enums.oob_mode, "oob_mode")
    dge = _enum(dge_mode, _DgeMode, core_enums.dge_mode, "dge_mode")
    if dst_rmw_op is None:
        run_masked(core.dma_copy, dst, mask, src=src, oob_mode=oob, dge_mode=dge)
        return
    if oob is not core_enums.oob_mode.error:
        raise NkiValidationError("dma_copy: with dst_rmw_op only oob_mode=oob_mode.error is "
                                 "allowed", op="dma_copy")

    def rmw(dst, src):
        core.dma_compute(dst=dst, srcs=[dst, src], reduce_op=dst_rmw_op, oob_mode=oob)

    run_masked(rmw, dst, mask, src=src)


def dma_transpose(src, *, axes=None, mask=None, dtype=None, **kwargs):
    """A new SBUF tile holding src transposed on a DMA queue: axes (1, 0), (2, 1, 0) or
    (3, 1, 2, 0) (the default for src's rank)."""
    src = _t(src)
    nd = len(src.shape)
    perm = tuple(axes) if axes is not None else {2: (1, 0), 3: (2, 1, 0),
                                                  4: (3, 1, 2, 0)}.get(nd, tuple(range(nd)))
    if sorted(perm) != list(range(nd)):
        raise NkiValidationError(f"dma_transpose: axes={axes!r} is not a permutation of the "
                                 f"{nd} dims of src", op="dma_transpose")
    shape = tuple(src.shape[a] for a in perm)
    dge = _enum(kwargs.get("dge_mode", _DgeMode.unknown), _DgeMode, core_enums.dge_mode,
                "dge_mode")

    def build(grid, dst):
        spans = _spans(grid, src)
        if any(hi <= lo for lo, hi in spans):
            return None
        view = grid.view(src)
        return _cast_after(core.dma_transpose, sbuf,
                           dict(dst=_view_spans(dst, [spans[a] for a in perm]), src=view,
                                axes=axes, dge_mode=dge, _src_dtype=view.dtype))

    return _deferred(_maybe_cast(core.dma_transpose), shape, _dtype(dtype, src.dtype),
                     _buffer(kwargs), mask, build, _name(kwargs))


# -- GpSimd misc -----------------------------------------------------------------------
def sequence_bounds(*, segment_ids, dtype=None):
    """[P, 2, n]: the [start, end) of the segment of each of the n elements (GpSimd)."""
    seg = _t(segment_ids)
    n = math.prod(seg.shape[1:])
    return result_op(core.sequence_bounds, (seg.shape[0], 2, n), _dtype(dtype, seg.dtype),
                     sbuf, None, "", segment_ids=seg)


def get_nc_version():
    """The nc_version of the target (legacy NKI knows gen2 and gen3)."""
    gen = core.get_nc_version().value
    if gen not in nc_version._value2member_map_:
        raise UnsupportedError(f"legacy neuronxcc.nki has no nc_version for NeuronCore-v{gen}; "
                               "it targets gen2 (Trn1/Inf2) and gen3 (Trn2)",
                               op="get_nc_version")
    return nc_version(gen)


def builtin_custom_op(function_name, lib_file_name, ulib_to_ucode_version, ulib_to_isa_version,
                      srcs, dsts, **kwargs):
    raise UnsupportedError(
        f"builtin_custom_op({function_name!r}, {lib_file_name!r}): GpSimd custom operators "
        "run compiled microcode libraries, which the simulator cannot execute; rewrite the "
        "operator with nki.isa instructions", op="builtin_custom_op")


__all__ = [
    "engine", "reduce_cmd", "dge_mode", "oob_mode", "nc_version", "fp32",
    "tensor_engine", "vector_engine", "scalar_engine", "gpsimd_engine", "unknown_engine",
    "dma_engine", "activation", "activation_reduce", "affine_select", "bn_aggr", "bn_stats",
    "builtin_custom_op", "dma_copy", "dma_transpose", "dropout", "get_nc_version", "iota",
    "local_gather", "max8", "memset", "nc_find_index8", "nc_match_replace8", "nc_matmul",
    "nc_stream_shuffle", "nc_transpose", "range_select", "reciprocal", "scalar_tensor_tensor",
    "select_reduce", "sequence_bounds", "tensor_copy", "tensor_copy_dynamic_dst",
    "tensor_copy_dynamic_src", "tensor_copy_predicated", "tensor_partition_reduce",
    "tensor_reduce", "tensor_scalar", "tensor_scalar_reduce", "tensor_tensor",
    "tensor_tensor_scan",
]
