"""The traced path's shortcuts for the most frequent front-end steps make what the
general code makes: the `t[:, a:b]` view of a 2-D tile (NkiTensor._columns against
_index_static, the general indexing), the `t[:, i, :]` view of a 3-D one
(NkiTensor._middle) and the kernel line of a call site
(kernel_location, kept per instruction of the code, against the frame's line)."""
import gc
import random
import sys

import numpy as np
import pytest

import trnsim.nki.language as nl
from trnsim.machine.errors import SourceLocation, kernel_location

from kernel_helpers import inside_a_kernel


def _parts(t):
    return (t.shape, t.strides, t.offset, t.dtype, t.storage, t.buffer, t.name, t.dyn)


def test_column_slices_make_the_general_views():
    rng = random.Random(5)

    def bound(n):
        return rng.choice([None, rng.randrange(-n - 2, n + 3), 0, n, -1, -n,
                           np.int64(1)])

    def body(x):
        bases = [nl.ndarray((128, 96), nl.float32, buffer=nl.sbuf),
                 nl.ndarray((128, 2048), nl.float32, buffer=nl.psum)[:, 512:1024],
                 nl.ndarray((64, 4, 16), nl.bfloat16, buffer=nl.sbuf)[:, 2, :],
                 nl.ndarray((100, 40), nl.bfloat16, buffer=nl.sbuf)[4:90, 3:37]]
        made = failed = 0
        for _ in range(2000):
            t = rng.choice(bases)
            rows = rng.choice([slice(None)] * 4 + [slice(0, None), slice(None, None, 1)])
            k = rng.choice([slice(bound(t.shape[1]), bound(t.shape[1]))] * 5
                           + [slice(0, 4, 1), slice(0, 4, 2), 3])
            try:
                slow = t._index_static((rows, k))[0]
            except Exception as e:
                failed += 1
                with pytest.raises(type(e)):
                    t[rows, k]
                continue
            if rows in (slice(None), slice(None, None, 1)) and type(k) is slice and \
                    k.step is None and all(type(b) in (int, type(None))
                                           for b in (k.start, k.stop)):
                made += 1  # (a key of the shortcut's form, in range)
            assert _parts(t[rows, k]) == _parts(slow)
        return made, failed

    made, failed = inside_a_kernel(body)
    assert made > 200 and failed > 100


def test_middle_int_of_3d_views_makes_the_general_views():
    rng = random.Random(6)

    def body(x):
        bases = [nl.ndarray((128, 12, 64), nl.bfloat16, buffer=nl.sbuf),
                 nl.ndarray((128, 4, 512), nl.float32, buffer=nl.psum)[:, 1:3, 128:256],
                 nl.ndarray((64, 6, 2, 8), nl.float32, buffer=nl.sbuf)[:, :, 1, :],
                 nl.ndarray((96, 5, 16), nl.int32, buffer=nl.sbuf)[8:40, :, 3:11],
                 x.reshape((64, 4, 32)), x.reshape((256, 4, 8))[1:7, :, 2:6]]
        made = failed = 0
        for _ in range(2000):
            t = rng.choice(bases)
            n = t.shape[1]
            i = rng.choice([rng.randrange(-n - 2, n + 3), 0, n - 1, -1, -n, n, np.int64(1),
                            True, slice(0, 1)])
            whole = [slice(None)] * 6 + [slice(0, None), slice(None, None, 1), 0]
            key = (rng.choice(whole), i, rng.choice(whole))
            fast = t._middle(key)
            try:
                slow = t._index_static(key)[0]
            except Exception as e:
                failed += 1
                assert fast is None, (key, e)
                with pytest.raises(type(e)):
                    t[key]
                continue
            if fast is not None:
                made += 1
                assert _parts(fast) == _parts(slow), key
            else:  # (another index kind: the general path's view)
                assert type(i) is not int or key[0] != slice(None) or key[2] != slice(None)
            assert _parts(t[key]) == _parts(slow)
        return made, failed

    made, failed = inside_a_kernel(body)
    assert made > 200 and failed > 100


def test_kernel_lines_of_call_sites_kept_per_instruction():
    """Call sites on many lines of functions made anew (the same file and lines, other
    code objects; each run twice: its second location comes from the memo) give the
    line the frame itself reports."""
    for n in (3, 40, 7):
        lines = "\n".join(f"    out.append((where(1), sys._getframe().f_lineno))"
                           if i % 3 == 0 else f"    x = {i}" for i in range(n))
        ns = {"where": kernel_location, "sys": sys}
        exec(compile(f"def sites(out):\n{lines}\n", "made_kernel.py", "exec"), ns)
        for _ in range(2):
            out = []
            ns["sites"](out)
            assert out and all(loc == SourceLocation("made_kernel.py", line, "sites")
                               for loc, line in out)
        del ns
        gc.collect()
