"""engine_imbalance names the same idle engine in every process: where two idle engines
could take the pinned work equally, the first in ENGINES order (the candidates were a
set of strings, whose order follows the per-process string hash)."""
import os
import subprocess
import sys

_KERNEL = """
import numpy as np
import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

@trnsim.nki.jit
def copies_pinned_to_vector(x):
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    for g in range(x.shape[0]):
        t = nl.ndarray((128, 2048), nl.float32, buffer=nl.sbuf)
        u = nl.ndarray((128, 2048), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[g])
        for _ in range(4):
            nisa.tensor_copy(dst=u, src=t, engine=nisa.vector_engine)
            nisa.tensor_copy(dst=t, src=u, engine=nisa.vector_engine)
        nisa.dma_copy(dst=out[g], src=t)
    return out

x = np.zeros((4, 128, 2048), np.float32)
found = {i.rule: i for i in trnsim.profile(copies_pinned_to_vector, x, chip="trn2").all_insights}
print(found["engine_imbalance"].message)
"""


def test_a_tie_between_idle_engines_is_broken_the_same_way_in_every_process():
    messages = set()
    for seed in ("0", "1", "2", "3", "4", "5"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", _KERNEL], env=env, capture_output=True,
                              text=True, check=True)
        messages.add(done.stdout.strip())
    assert len(messages) == 1, messages
    assert "ScalarE" in messages.pop()  # (scalar comes before gpsimd in ENGINES)
