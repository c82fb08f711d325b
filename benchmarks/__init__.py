"""Benchmark scripts (`python -m benchmarks.<name>` from the repository root).

One BLAS thread for every benchmark, set before any of them imports NumPy: the figures
are CPU seconds, which a multithreaded BLAS inflates and scatters (its threads spin),
and `make bench` runs its jobs in worker processes that inherit the setting."""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
