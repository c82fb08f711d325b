"""Profiles: what Neuron Explorer would show about a kernel, predicted on the simulator.

    prof = trnsim.profile(kernel, a, b, chip="trn2")   # this module is callable
    prof.total_time, prof.summary, prof.insights, prof.benchmark_result
    prof.to_perfetto("trace.json"); prof.report("report.html")

`trnsim.profile(...)` is `trnsim.profile.profile(...)`; the module stays a package, so
`trnsim.profile.Profile` and its submodules import as usual.
"""
import inspect
import sys
import types

from .insights import Insight, find_insights  # noqa: F401
from .profile import BenchmarkResult, Latency, Profile, profile  # noqa: F401
from .summary import summarize  # noqa: F401

__all__ = ["profile", "Profile", "Insight", "BenchmarkResult", "summarize",
           "find_insights"]


class _CallableModule(types.ModuleType):
    def __call__(self, kernel, *args, **kwargs):
        return profile(kernel, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__signature__ = inspect.signature(profile)
