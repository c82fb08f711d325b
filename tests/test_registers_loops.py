"""Virtual registers (nisa.register_*) and dynamic control flow (nl.dynamic_range,
nl.fori_loop, nl.while_loop, `while reg:`), checked against NumPy references."""
from __future__ import annotations

import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiNumericsWarning, NkiValidationError, UnsupportedError
from kernel_helpers import load, store

# nl.dynamic_range (removed in NKI 0.7) is tested here as the 0.6 kernels use it
pytestmark = pytest.mark.filterwarnings("ignore:nl.dynamic_range was removed:DeprecationWarning")


def run(kernel, *args, chip="trn2", numerics=True):
    return trnsim.run_kernel(kernel, args, chip=chip, numerics=numerics)


def reg_from(x):
    """A register loaded from a (1, 1) int32 HBM input, through SBUF."""
    r = nisa.register_alloc()
    nisa.register_load(r, load(x))
    return r


def branches(r, kind):
    return [i for i in r.program if i.opcode == "branch" and i.attrs["kind"] == kind]


# -- registers --------------------------------------------------------------------
def test_alloc_move_store_roundtrip_and_record():
    def k():
        a = nisa.register_alloc(-7)
        b = nisa.register_alloc()
        nisa.register_move(b, a)
        c = nisa.register_alloc(None)
        nisa.register_move(c, 0xFFFFFFFF)
        out = nl.ndarray((1, 3), nl.int32, buffer=nl.sbuf)
        nisa.register_store(out[:, 0:1], a)
        nisa.register_store(out[:, 1:2], b)
        nisa.register_store(out[:, 2:3], c)
        u = nl.ndarray((1, 1), nl.uint32, buffer=nl.sbuf)
        nisa.register_store(u, c)
        return store(out), store(u)
    (out, u), r = run(k)
    assert out.tolist() == [[-7, -7, -1]]         # 0xFFFFFFFF stored as int32 bits
    assert u.tolist() == [[0xFFFFFFFF]]
    ops = [(i.engine, i.opcode) for i in r.program if i.opcode.startswith("register")]
    assert ops == [("sync", "register_move")] * 3 + [("sync", "register_store")] * 4
    mv = [i for i in r.program if i.opcode == "register_move"]
    assert mv[1].attrs["reg_reads"] == mv[0].attrs["reg_writes"]


def test_register_load_from_device_value_used_in_ds_and_select():
    a = np.arange(10 * 6, dtype=np.float32).reshape(10, 6)
    off = np.array([[3]], np.int32)

    def k(x, o):
        t = load(o)
        nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=2)   # computed on device: 5
        r = nisa.register_alloc()
        nisa.register_load(r, t)
        rows = nl.ndarray((2, 6), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=rows, src=x[nl.ds(r, 2), :])              # rows 5, 6
        col = nl.ndarray((1, 10), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=col, src=x.select(1, r).reshape((1, 10)))  # column 5
        one = nl.ndarray((1, 6), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=one, src=x[r].reshape((1, 6)))             # row 5
        return store(rows), store(col), store(one)
    (rows, col, one), r = run(k, a, off)
    np.testing.assert_array_equal(rows, a[5:7])
    np.testing.assert_array_equal(col, a[:, 5].reshape(1, 10))
    np.testing.assert_array_equal(one, a[5:6])
    ld = next(i for i in r.program if i.opcode == "register_load")
    assert [acc.role for acc in ld.reads] == ["src"] and ld.engine == "sync"


def test_register_alloc_from_tensor_and_scalar_offset():
    a = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)

    def k(x, o):
        r = nisa.register_alloc(load(o))      # as NKI-library kernels do
        t = nl.ndarray((1, 3), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x.ap([[3, 1], [1, 3]], scalar_offset=r, indirect_dim=0))
        return store(t)
    out, _ = run(k, a, np.array([[2]], np.int32))
    np.testing.assert_array_equal(out, a[2:3])


def test_register_errors():
    def uninit():
        r = nisa.register_alloc()
        nisa.register_store(nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf), r)
    with pytest.raises(NkiValidationError, match="before any value was written"):
        run(uninit)
    # a register check's error names the instruction and the kernel line issuing it
    with pytest.raises(NkiValidationError, match=r"^register_move: .*32-bit") as e:
        run(lambda: nisa.register_alloc(1 << 32))  # (its initial value is a move)
    assert e.value.op == "register_move" and e.value.location.file == __file__
    with pytest.raises(NkiValidationError, match=r"^register_move: .*frozen") as e:
        run(lambda: nisa.register_move(nisa.VirtualRegister(3, frozen=True), 4))
    assert e.value.location.file == __file__
    with pytest.raises(NkiValidationError, match="exactly one element"):
        run(lambda: nisa.register_load(nisa.register_alloc(),
                                       nl.ndarray((1, 2), nl.int32, buffer=nl.sbuf)))
    with pytest.raises(TypeError, match="cannot be compared"):
        run(lambda: nisa.register_alloc(1) == 1)


def test_register_load_float_loads_bits_with_warning():
    def k(x):
        r = nisa.register_alloc()
        nisa.register_load(r, load(x))
        out = nl.ndarray((1, 1), nl.uint32, buffer=nl.sbuf)
        nisa.register_store(out, r)
        return store(out)
    with pytest.warns(NkiNumericsWarning, match="raw bits"):
        out, _ = run(k, np.array([[1.0]], np.float32))
    assert out[0, 0] == np.float32(1.0).view(np.uint32)


# -- dynamic_range -------------------------------------------------------------------
def test_dynamic_range_register_trip_count():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)

    def k(v, n):
        t = load(v)
        acc = nl.ndarray((2, 4), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=acc, value=0.0)
        for _ in nl.dynamic_range(reg_from(n)):
            nisa.tensor_tensor(dst=acc, data1=acc, data2=t, op=nl.add)
        return store(acc)
    for trips in (0, 1, 5):
        out, r = run(k, x, np.array([[trips]], np.int32))
        np.testing.assert_array_equal(out, trips * x)
        b = branches(r, "dynamic_range")
        assert [i.attrs["taken"] for i in b] == [True] * trips + [False]
        assert all(i.engine == "sync" for i in b)


def test_dynamic_range_start_stop_step_as_offsets():
    a = np.arange(16 * 4, dtype=np.float32).reshape(16, 4)

    def k(x):
        out = nl.ndarray((16, 4), nl.float32, buffer=nl.shared_hbm)
        zero = nl.ndarray((16, 4), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=zero, value=-1.0)
        nisa.dma_copy(dst=out, src=zero)
        begin, end = nisa.register_alloc(2), nisa.register_alloc(11)
        for i in nl.dynamic_range(begin, end, 3):               # rows 2, 5, 8
            t = nl.ndarray((2, 4), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x.ap([[4, 2], [1, 4]], scalar_offset=i))
            nisa.dma_copy(dst=out.ap([[4, 2], [1, 4]], scalar_offset=i), src=t)
        return out
    out, _ = run(k, a)
    exp = np.full_like(a, -1.0)
    for i in range(2, 11, 3):
        exp[i:i + 2] = a[i:i + 2]
    np.testing.assert_array_equal(out, exp)


def test_dynamic_range_step_must_be_static_positive():
    with pytest.raises(NkiValidationError, match="compile-time positive"):
        run(lambda: list(nl.dynamic_range(0, 4, nisa.register_alloc(1))))
    with pytest.raises(NkiValidationError, match="compile-time positive"):
        run(lambda: list(nl.dynamic_range(0, 4, 0)))


def test_loop_variable_is_a_register():
    seen = []

    def k():
        for i in nl.dynamic_range(3):
            seen.append((type(i), int(i)))
    run(k)
    assert seen == [(nisa.VirtualRegister, 0), (nisa.VirtualRegister, 1),
                    (nisa.VirtualRegister, 2)]


# -- fori_loop ---------------------------------------------------------------------
def test_fori_loop_register_bound_doc_pattern():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((1, 12)).astype(np.float32)

    def k(d, ub):
        out = nl.ndarray((1, 12), nl.float32, buffer=nl.shared_hbm)
        z = nl.ndarray((1, 12), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=z, value=0.0)
        nisa.dma_copy(dst=out, src=z)
        temp = nl.ndarray((1, 1), nl.float32, buffer=nl.sbuf)

        def body(i):
            nisa.dma_copy(dst=temp, src=d.ap([[1, 1], [1, 1]], scalar_offset=i, indirect_dim=1))
            nisa.dma_copy(dst=out.ap([[1, 1], [1, 1]], scalar_offset=i, indirect_dim=1),
                          src=temp)
            nisa.register_move(i, 0)          # writing i does not change the loop
        assert nl.fori_loop(0, reg_from(ub), body) is None
        return out
    out, r = run(k, data, np.array([[7]], np.int32))
    exp = np.zeros_like(data)
    exp[:, :7] = data[:, :7]
    np.testing.assert_array_equal(out, exp)
    assert len(branches(r, "fori_loop")) == 8


def test_fori_loop_step_and_ds():
    a = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)

    def k(x):
        acc = nl.ndarray((1, 3), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=acc, value=0.0)
        row = nl.ndarray((1, 3), nl.float32, buffer=nl.sbuf)

        def body(i):
            nisa.dma_copy(dst=row, src=x[nl.ds(i, 1), :])
            nisa.tensor_tensor(dst=acc, data1=acc, data2=row, op=nl.add)
        nl.fori_loop(1, 20, body, step=4)
        return store(acc)
    out, _ = run(k, a)
    np.testing.assert_array_equal(out, a[1:20:4].sum(axis=0, keepdims=True))


# -- while_loop and `while reg:` ------------------------------------------------------
def k_while(data, count):
    val = load(data)
    acc = nl.ndarray((1, 1), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=acc, value=0.0)
    count_sb = load(count)
    one = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf)
    nisa.memset(dst=one, value=1)
    reg = nisa.register_alloc()
    nisa.register_load(reg, count_sb)

    def body(r):
        nisa.tensor_tensor(dst=acc, data1=acc, data2=val, op=nl.add)
        nisa.tensor_tensor(dst=count_sb, data1=count_sb, data2=one, op=nl.subtract)
        nisa.register_load(r, count_sb)
        return r
    assert nl.while_loop(reg, body) is None
    return store(acc)


@pytest.mark.parametrize("count", [0, 1, 6])
def test_while_loop_doc_example(count):
    out, r = run(k_while, np.array([[2.5]], np.float32), np.array([[count]], np.int32))
    assert out[0, 0] == np.float32(2.5) * count
    assert [i.attrs["taken"] for i in branches(r, "while_loop")] == [True] * count + [False]


def test_while_loop_body_must_return_register():
    with pytest.raises(NkiValidationError, match="must return the next condition"):
        run(lambda: nl.while_loop(nisa.register_alloc(1), lambda r: None))


def test_bare_while_on_register():
    conds = np.array([[1, 1, 1, 0, 1]], np.int32)

    def k(c):
        cs = load(c)
        n = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf)
        nisa.memset(dst=n, value=0)
        reg = nisa.register_alloc(1)
        i = 0
        while reg:
            nisa.tensor_scalar(dst=n, data=n, op0=nl.add, operand0=1)
            i += 1
            nisa.register_load(reg, cs[:, i - 1:i])
        return store(n)
    out, r = run(k, conds)
    assert out[0, 0] == 4                      # stops at the first 0 in conds
    assert [i.attrs["taken"] for i in branches(r, "branch")] == [True] * 4 + [False]


# -- timing-only runs -----------------------------------------------------------------
def test_numerics_off_immediate_registers_work_loaded_ones_do_not():
    def immediate():
        acc = nl.ndarray((1, 4), nl.float32, buffer=nl.sbuf)
        for _ in nl.dynamic_range(nisa.register_alloc(3)):
            nisa.memset(dst=acc, value=1.0)
    _, r = run(immediate, numerics=False)
    assert [i.opcode for i in r.program].count("memset") == 3

    def loaded(n):
        for _ in nl.dynamic_range(reg_from(n)):
            pass
    with pytest.raises(UnsupportedError, match="timing-only"):
        run(loaded, np.array([[2]], np.int32), numerics=False)
