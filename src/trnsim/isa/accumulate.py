"""Engine accumulator registers and the `reduce_cmd` state machine.

The Vector Engine has one fp32 accumulator register per compute lane, shared by
`exponential`, `range_select`, `select_reduce`, `tensor_scalar_reduce` and
`tensor_scalar_cumulative`; the Scalar Engine has its own set for `activation`. A lane is
an absolute partition: an instruction whose `data` starts at partition 32 uses lanes
32.. (`lane0(t)`), so a chain must keep its tiles on the same partitions.

State lives on the core: `core.accumulators[engine]` is the (partitions,) fp32 array of
register values and `core.accumulators[engine + ":valid"]` the (partitions,) bool array
of lanes holding a defined value (lanes start undefined, as NaN).

reduce_cmd (the `nki.isa.reduce_cmd` enum, its name, or its stub integer 0..4):
    idle          no accumulation; the lanes become undefined (the docs warn that idle
                  may still modify the registers)
    reset         registers = identity of `op` (add/subtract 0, multiply 1, maximum -inf,
                  minimum +inf); this instruction's values are not accumulated
    reset_reduce  registers = identity, then fold this instruction's values in
    reduce        fold into the current registers (a warning, or an error in strict mode,
                  if a lane is undefined; the undefined lanes read as NaN)
    load_reduce   registers = `init` ([P, 1] values or a scalar), then fold

Folding is sequential in element order (row-major over the free axes) in fp32, as one
lane streams its elements: reg = op(reg, x[0]); reg = op(reg, x[1]); ... The values
folded are the instruction's fp32 results before the cast to dst's dtype.

API (every function is a no-op on values when numerics are off, `ins.numerics` False,
and then returns None; pass values=None in that case):

    accumulate(ins, engine, cmd, op, values, lo, partitions, init=None) -> (P,) fp32 | None
        Apply `cmd` to lanes [lo, lo+P) with `values` ((P, F...) fp32) folded by `op`
        (an ALU op: nl.add, "maximum", ...). Returns the new register values.
    begin(ins, engine, cmd, op, lo, partitions, init=None) -> (P,) fp32 | None
    commit(ins, engine, lo, values)
        The two halves of `accumulate`, for instructions that scan (write every partial
        result, e.g. tensor_scalar_cumulative): begin() gives the starting register
        values for `cmd`, commit() stores the final ones.
    read_out(engine, reduce_res, lo, partitions, negate=False, opcode="read_accumulator")
        The separate instruction that copies lanes [lo, lo+P) into reduce_res[P, 1]
        (cast with RNE); call it after the accumulating instruction's `with` block.
    vector_accumulate(ins, cmd, op, lo, P, values, init=None) / vector_read(reduce_res, lo, P)
        The same for engine="vector".
    cmd_name(cmd) -> str, identity(op) -> float, fold(op, values, start) -> (P,) fp32,
    sequential_fold(ufunc, values, start) -> (P,) fp32 (fold's in-order core, for a
    NumPy ufunc), scan(op, values, start, value_first=True) -> (P, F) fp32,
    lane0(t) -> int.
"""
from __future__ import annotations

import numpy as np

from ..machine.access import describe_access
from . import lane_fold
from .base import Instr
from .enums import reduce_cmd as ReduceCmd
from .ops import alu

CMDS = ("idle", "reset", "reduce", "reset_reduce", "load_reduce")
_BY_VALUE = dict(enumerate(CMDS))
_UFUNC = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
          "maximum": np.maximum, "minimum": np.minimum}
_FP32 = np.dtype(np.float32)
_IDENTITY = {"add": 0.0, "subtract": 0.0, "multiply": 1.0, "maximum": -np.inf,
             "minimum": np.inf, "abs_max": 0.0, "abs_min": np.inf}


def cmd_name(cmd) -> str:
    """A reduce_cmd given as the enum, its name, or its stub integer value (0..4)."""
    if cmd is None:
        return "idle"
    if isinstance(cmd, ReduceCmd):
        return cmd.name
    name = getattr(cmd, "name", None)
    if isinstance(name, str) and name in CMDS:
        return name
    if isinstance(cmd, (int, np.integer)) and not isinstance(cmd, bool):
        if int(cmd) in _BY_VALUE:
            return _BY_VALUE[int(cmd)]
    if isinstance(cmd, str) and cmd in CMDS:
        return cmd
    raise ValueError(f"reduce_cmd={cmd!r} is not a nki.isa.reduce_cmd "
                     f"({', '.join(CMDS)})")


def _op_name(op) -> str:
    return op if isinstance(op, str) and op in _IDENTITY else alu(op).name


def identity(op) -> float:
    """The value `reset` / `reset_reduce` loads for `op`."""
    name = _op_name(op)
    if name not in _IDENTITY:
        raise ValueError(f"{name} is not an accumulating operator")
    return _IDENTITY[name]


def lane0(t) -> int:
    """The first compute lane (absolute partition) an on-chip operand covers."""
    return describe_access(t, "", "r").p_lo


def _rows(values, partitions=None) -> np.ndarray:
    v = values if type(values) is np.ndarray and values.dtype == _FP32 else np.asarray(
        values, dtype=np.float32)
    p = v.shape[0] if v.ndim else (partitions or 1)
    return v.reshape(p, -1)


def fold(op, values, start=None) -> np.ndarray:
    """Fold rows of `values` (P, F...) with `op` in element order, in fp32, starting
    from `start` ((P,) or a scalar) when given. Returns (P,) fp32."""
    name = _op_name(op)
    v = _rows(values)
    if start is not None and not _lane_values(start, v.shape[0]):
        start = np.broadcast_to(np.asarray(start, np.float32).reshape(-1), (v.shape[0],))
    with np.errstate(all="ignore"):
        if name in ("add", "subtract", "multiply"):
            return sequential_fold(_UFUNC[name], v, start)
        if start is not None:
            v = np.concatenate([start.reshape(-1, 1), v], axis=1)
        if name in ("maximum", "minimum"):  # order-free
            return _UFUNC[name].reduce(v, axis=1).astype(np.float32)
        if name in ("abs_max", "abs_min"):
            f = np.maximum if name == "abs_max" else np.minimum
            return f.reduce(np.abs(v), axis=1).astype(np.float32)
    raise ValueError(f"{name} is not an accumulating operator")


def _lane_values(a, partitions: int) -> bool:
    """Whether `a` is a (partitions,) fp32 array already (as `begin` gives)."""
    return type(a) is np.ndarray and a.shape == (partitions,) and a.dtype == _FP32


def sequential_fold(ufunc, v: np.ndarray, start=None) -> np.ndarray:
    """reg = ufunc(reg, v[:, i]) for i in order, per row of fp32 `v` (P, F), in fp32,
    from reg = `start` ((P,), or None: from v[:, 0]); `_chain`'s bits. NumPy reduces
    along an axis that is not the fast one in memory sequentially (pairwise summation
    runs only along the fast axis), so the rows are reduced as the columns of a
    transposed copy, every lane in one vector step per element: about 4x faster than
    `_chain` on a [128, 2048] tile; where numba is loaded, isa/lane_fold.py reads the
    tile as it lies instead (faster again). Rows that end in NaN or zero are
    chained again: which NaN comes out of NaN operands can differ (NumPy's vector
    loop does not pick the scalar chain's NaN in every lane), and NumPy starts an add
    from +0.0, so a sum of -0.0s would end in +0.0."""
    p, f = v.shape
    if p < 2:  # (a single lane's column would be the fast axis)
        return _chain(ufunc, v, start)
    if f and lane_fold.wanted(ufunc):
        out = lane_fold.fold_rows(ufunc, _skewed_rows(v), start)
    else:
        first = 0 if start is None else 1
        columns = np.empty((first + f, p), np.float32)
        if first:
            columns[0] = start
        np.copyto(columns[first:], _skewed_rows(v).T)
        out = ufunc.reduce(columns, axis=0)
    redo = np.isnan(out) | (out == 0)
    if np.count_nonzero(redo):  # (ndarray.any is Python code: ~4x the time)
        out[redo] = _chain(ufunc, v[redo], None if start is None else start[redo])
    return out


def _skewed_rows(v: np.ndarray) -> np.ndarray:
    """`v`, or a copy of it, with rows an odd number of 64-byte lines apart (as an
    on-chip tile's are: memory.py). (The transposing copy reads one element of every row
    per step: rows a multiple of 4 KiB apart share a few L1 sets and evict each other.)"""
    if v.strides[1] == v.itemsize and v.strides[0] % 128 == 64:
        return v
    p, f = v.shape
    padded = np.empty((p, 16 * (-(-f // 16) | 1)), np.float32)[:, :f]
    np.copyto(padded, v)
    return padded


def _chain(ufunc, v: np.ndarray, start) -> np.ndarray:
    """`sequential_fold` as one scalar chain per row (ufunc.accumulate)."""
    if start is not None:
        v = np.concatenate([start.reshape(-1, 1), v], axis=1)
    return ufunc.accumulate(v, axis=1, dtype=np.float32)[:, -1]


def scan(op, values, start, value_first=True) -> np.ndarray:
    """Every partial result of a lane streaming `values` (P, F...) through the register:
    reg = op(x[i], reg) (value_first) or op(reg, x[i]), starting from `start` ((P,)).
    Returns (P, F) fp32."""
    name = _op_name(op)
    v = _rows(values)
    s = np.broadcast_to(np.asarray(start, np.float32).reshape(-1), (v.shape[0],))
    with np.errstate(all="ignore"):
        if name in ("add", "multiply", "maximum", "minimum"):  # commutative: ufunc scan
            full = np.concatenate([s.reshape(-1, 1), v], axis=1)
            return _UFUNC[name].accumulate(full, axis=1, dtype=np.float32)[:, 1:]
        if name == "subtract":
            out = np.empty_like(v)
            reg = s.astype(np.float32)
            for i in range(v.shape[1]):
                reg = (v[:, i] - reg) if value_first else (reg - v[:, i])
                out[:, i] = reg
            return out
    raise ValueError(f"{name} is not an accumulating operator")


class Registers:
    """One engine's accumulator registers, stored in `core.accumulators[engine]`
    (values) and `core.accumulators[engine + ':valid']` (defined lanes)."""

    def __init__(self, ins: Instr, engine: str):
        n = ins.chip.core.partitions
        acc = ins.core.accumulators
        if engine not in acc:
            acc[engine] = np.full(n, np.nan, dtype=np.float32)
            acc[engine + ":valid"] = np.zeros(n, dtype=bool)
        self.ins, self.engine = ins, engine
        self.values = acc[engine]
        self.valid = acc[engine + ":valid"]

    def set(self, lo: int, values):
        v = np.asarray(values, dtype=np.float32).reshape(-1)
        self.values[lo:lo + v.shape[0]] = v
        self.valid[lo:lo + v.shape[0]] = True

    def invalidate(self, lo: int, n: int):
        self.values[lo:lo + n] = np.nan
        self.valid[lo:lo + n] = False

    def get(self, lo: int, n: int, why: str) -> np.ndarray:
        if not self.valid[lo:lo + n].all():
            bad = np.flatnonzero(~self.valid[lo:lo + n]) + lo
            self.ins.warn(f"{why} reads the {self.engine} engine's accumulator registers, "
                          f"but lanes {_lanes(bad)} hold no defined value (never set, or "
                          "clobbered by a reduce_cmd=idle instruction); start the chain "
                          "with reduce_cmd=reset_reduce or load_reduce")
        return self.values[lo:lo + n].copy()


def _lanes(idx) -> str:
    idx = list(map(int, idx))
    return f"{idx[0]}..{idx[-1]}" if len(idx) > 1 else str(idx[0])


def begin(ins: Instr, engine: str, cmd, op, lo: int, partitions: int, init=None):
    """Starting register values of lanes [lo, lo+P) for `cmd` ((P,) fp32), or None for
    idle (the lanes are then marked undefined) and when numerics are off."""
    regs = _begin(ins, engine, cmd_name(cmd), op, lo, partitions, init)
    return None if regs is None else regs[1]


def _begin(ins: Instr, engine: str, cmd: str, op, lo: int, partitions: int, init):
    """`begin` for a cmd name: (the registers, the starting values), or None."""
    if not ins.numerics:
        return None
    if cmd == "load_reduce" and init is None:
        ins.fail("reduce_cmd=load_reduce needs an initial value for the accumulator")
    regs = Registers(ins, engine)
    if cmd == "idle":
        regs.invalidate(lo, partitions)
        return None
    if cmd in ("reset", "reset_reduce"):
        return regs, np.full(partitions, identity(op), dtype=np.float32)
    if cmd == "load_reduce":
        return regs, np.broadcast_to(np.asarray(init, np.float32).reshape(-1),
                                     (partitions,)).astype(np.float32)
    return regs, regs.get(lo, partitions, "reduce_cmd=reduce")


def commit(ins: Instr, engine: str, lo: int, values) -> None:
    """Store final register values (P,) for lanes [lo, lo+P)."""
    if ins.numerics and values is not None:
        Registers(ins, engine).set(lo, values)


def accumulate(ins: Instr, engine: str, cmd, op, values, lo: int, partitions: int,
               init=None):
    """Apply `cmd` to lanes [lo, lo+partitions) of `engine`'s registers, folding this
    instruction's fp32 `values` (P, F...) with `op`. Returns the new (P,) values, or
    None for idle and when numerics are off."""
    cmd = cmd_name(cmd)
    regs = _begin(ins, engine, cmd, op, lo, partitions, init)
    if regs is None:
        return None
    regs, start = regs
    new = start if cmd == "reset" or values is None else fold(op, values, start)
    regs.set(lo, new)
    return new


def read_out(engine: str, reduce_res, lo: int, partitions: int, negate: bool = False,
             opcode: str = "read_accumulator") -> None:
    """The instruction that writes lanes [lo, lo+P) of `engine`'s registers into
    reduce_res[P, 1] (negated when `negate`), recorded on `engine`."""
    with Instr(opcode, engine, default=engine, negate=bool(negate)) as ins:
        if not ins.numerics:
            ins.write("reduce_res", reduce_res, None)
            return
        vals = Registers(ins, engine).get(lo, partitions, "writing reduce_res")
        if negate:
            vals = -vals
        ins.write("reduce_res", reduce_res, vals.reshape(reduce_res.shape))


def vector_accumulate(ins: Instr, cmd, op, lo: int, partitions: int, values, init=None):
    """`accumulate` on the Vector Engine's registers."""
    return accumulate(ins, "vector", cmd, op, values, lo, partitions, init)


def vector_read(reduce_res, lo: int, partitions: int, negate: bool = False) -> None:
    """`read_out` of the Vector Engine's registers."""
    read_out("vector", reduce_res, lo, partitions, negate)


__all__ = []  # helpers for instruction modules; nothing here is nki.isa API
