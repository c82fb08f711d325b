"""Which compute engines could run an instruction whose engine the kernel left to the
compiler (`engine=unknown_engine`, or an nl.* call): the candidates the compiler model
balances. An unpinned instruction of an opcode below records them as
`attrs["engines"]`: its own engine (the default, which computed its numerics) first,
then every other engine of ("vector", "scalar", "gpsimd") that can execute that opcode
with those operands on that chip generation and would store the same bits. Pinned
instructions, and opcodes outside the table (one engine only, or an engine-local state
such as the PRNG of `rng`), record nothing.

Sources (aws-neuron-sdk; ISA-new = nki/api/nki/isa/__init__.py @81ce03ae, ALU =
nki/api/nki.api.shared.rst @1db4d74e "Supported Math Operators ... Supported Engine"):

| opcode        | engines the docs name        | per-candidate conditions                      |
|---------------|------------------------------|-----------------------------------------------|
| tensor_tensor | vector, gpsimd (ISA-new)     | GpSimd: op add / multiply / power (ALU),      |
|               |                              | no PSUM operand ("GpSimd cannot access PSUM") |
|               |                              | bitvec ops: Vector only (ALU); power: GpSimd  |
|               |                              | only; int32 native arithmetic: GpSimd only    |
|               |                              | (exact; Vector would round through fp32)      |
| tensor_scalar | vector, scalar, gpsimd       | Scalar: NeuronCore-v3+ ("Add and Multiply are |
|               | (ISA-new)                    | supported on Scalar Engine only from          |
|               |                              | NeuronCore-v3", ALU); on v3 only op0=multiply |
|               |                              | [op1=add] or op0=add (ISA-new); on v4 ops in  |
|               |                              | add/multiply/rsqrt/reciprocal/abs (ALU).      |
|               |                              | GpSimd: "only allowed for rsqrt" (ISA-new),   |
|               |                              | no PSUM operand. Bitvec and int32 address     |
|               |                              | arithmetic (exact integers): the default only |
| tensor_copy   | vector, scalar, gpsimd       | Scalar: NeuronCore-v3+ ("On NeuronCore v2,    |
|               | (ISA-new)                    | tensor_copy is not supported on the Scalar    |
|               |                              | Engine"), and not a same-dtype copy of int32/ |
|               |                              | uint32 (Scalar goes through fp32). GpSimd: no |
|               |                              | PSUM operand, no tensor indirection ("must    |
|               |                              | run on the Vector or Scalar engine")          |
| memset        | vector, gpsimd (ISA-new)     | GpSimd: dst not in PSUM                       |

Left out: nc_transpose (Tensor or Vector Engine, outside this three-engine set; the
Vector Engine only up to 32x32), rng / rand_*_state (each engine has its own PRNG
state), dma_copy's `engine` (a DGE queue, not a compute engine).
"""
from __future__ import annotations

ENGINES = ("vector", "scalar", "gpsimd")

# tensor_tensor ops the GpSimd Engine runs (ALU table); everything else is Vector only
_GPSIMD_TT = {"add", "multiply", "power"}
# tensor_scalar: Scalar Engine op pairs on NeuronCore-v3 (ISA-new) and ops on v4 (ALU)
_SCALAR_PAIRS_V3 = {("multiply", "add"), ("multiply", None), ("add", None)}
_SCALAR_OPS_V4 = {"add", "multiply", "rsqrt", "reciprocal", "abs"}
_GPSIMD_TS = {"rsqrt"}
_FP32_UNSAFE = ("int32", "uint32")  # same-dtype copies through fp32 change them


# the sets of engines a rule finds (each rule returns one of these objects: candidates
# keeps its answer per (own engine, set); a frozenset's hash is kept, a set's is not)
_V = frozenset({"vector"})
_G = frozenset({"gpsimd"})
_VS = frozenset({"vector", "scalar"})
_VG = frozenset({"vector", "gpsimd"})
_VSG = frozenset({"vector", "scalar", "gpsimd"})
_NONE = frozenset()


def _touches_psum(ins) -> bool:
    for a in ins.reads:
        if a.space == "psum":
            return True
    for a in ins.writes:
        if a.space == "psum":
            return True
    return False


def _tensor_tensor(ins, gen):
    a = ins.attrs
    op = a.get("op")
    if a.get("op_kind") == "bitvec":
        return _V
    if a.get("int_exact"):  # native int32 arithmetic
        return _G
    if op == "power":
        return _G if not _touches_psum(ins) else _NONE
    if op in _GPSIMD_TT and not _touches_psum(ins):
        return _VG
    return _V


def _tensor_scalar(ins, gen):
    a = ins.attrs
    if a.get("op_kind") == "bitvec" or a.get("int_exact"):
        return frozenset({ins.engine})
    op0, op1 = a.get("op0"), a.get("op1")
    scalar = ((gen == 3 and (op0, op1) in _SCALAR_PAIRS_V3)
              or (gen >= 4 and op0 in _SCALAR_OPS_V4
                  and (op1 is None or op1 in _SCALAR_OPS_V4)))
    gpsimd = (op0 in _GPSIMD_TS and (op1 is None or op1 in _GPSIMD_TS)
              and not _touches_psum(ins))
    if scalar:
        return _VSG if gpsimd else _VS
    return _VG if gpsimd else _V


def _tensor_copy(ins, gen):
    src = dst = None
    for r in ins.reads:
        if r.role == "src":
            src = r
            break
    for w in ins.writes:
        if w.role == "dst":
            dst = w
            break
    same_int32 = (src is not None and dst is not None and src.dtype == dst.dtype
                  and src.dtype in _FP32_UNSAFE)
    scalar = gen >= 3 and not same_int32
    gpsimd = not _touches_psum(ins)
    if gpsimd:
        for x in ins.reads:
            if x.indirect:
                gpsimd = False
                break
        else:
            for x in ins.writes:
                if x.indirect:
                    gpsimd = False
                    break
    if scalar:
        return _VSG if gpsimd else _VS
    return _VG if gpsimd else _V


def _memset(ins, gen):
    return _VG if not _touches_psum(ins) else _V


TABLE = {
    "tensor_tensor": _tensor_tensor,
    "tensor_scalar": _tensor_scalar,
    "tensor_copy": _tensor_copy,
    "memset": _memset,
}

_ORDERED: dict = {}  # (own engine, a rule's set) -> the other candidates, in order


def candidates(ins) -> tuple[str, ...] | None:
    """The candidate engines of an unpinned instruction being recorded (an `Instr`
    after its operands were read and written), its own engine first; None for an
    opcode outside the table."""
    rule = TABLE.get(ins.opcode)
    if rule is None:
        return None
    own = ins.engine
    key = (own, rule(ins, ins.generation))
    others = _ORDERED.get(key)
    if others is None:
        others = _ORDERED[key] = [e for e in ENGINES if e in key[1] and e != own]
    return (own, *others)  # (a tuple of its own: traced instructions keep theirs apart)
