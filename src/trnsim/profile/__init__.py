"""Profiles: what Neuron Explorer would show about a kernel, predicted on the simulator.

    prof = trnsim.profile(kernel, a, b, chip="trn2")   # this package is callable
    prof.total_time, prof.summary, prof.insights, prof.benchmark_result
    prof.to_perfetto("trace.json"); prof.report("report.html")

`trnsim.profile(...)` is `trnsim.entry.profile(...)` (trnsim/__init__.py makes this
package callable, since running a kernel lies above it); the package's own modules
import as usual.
"""
from .insights import Insight, find_insights  # noqa: F401
from .profile import BenchmarkResult, Latency, Profile  # noqa: F401
from .summary import summarize  # noqa: F401

__all__ = ["profile", "Profile", "Insight", "BenchmarkResult", "summarize",
           "find_insights"]
