"""`TRNSIM_PROFILE_DIR=dir`: every simulated kernel call of an unmodified script
(`nki.simulate(k)(...)`, a direct `@nki.jit` call, a legacy `neuronxcc.nki` kernel call or
`simulate_kernel`) writes its profile there: `<kernel>.trace.json` (Perfetto),
`<kernel>.report.html` and `<kernel>.summary.json`; later calls of the same kernel get
`<kernel>-2.*`, `<kernel>-3.*`, ... The entry points call `maybe_save(run, fn)` after a
run; it does nothing when the variable is unset, and a profile that cannot be written
gives a warning, never an error in the user's script.

A call whose instruction record repeats an earlier one (the same kernel and shapes again)
takes its timeline, summary and insights from the profile cache (trnsim.profile.cache)
instead of scheduling again; its summary JSON says `"cache": "hit"` (else `"miss"`) and
gives `"cache_key"`.
"""
from __future__ import annotations

import json
import os
import threading
import warnings

ENV = "TRNSIM_PROFILE_DIR"
_lock = threading.Lock()


def profile_dir() -> str | None:
    d = os.environ.get(ENV, "").strip()
    return d or None


def maybe_save(run, fn=None, outputs=None):
    """Write the profile of a finished Run when $TRNSIM_PROFILE_DIR is set; returns the
    paths written (dict) or None."""
    d = profile_dir()
    if d is None or run is None:
        return None
    name = getattr(fn, "__name__", None) or "kernel"
    try:
        return save_profile(_cached_profile(run, outputs, name), d)
    except Exception as exc:  # never break the user's script
        warnings.warn(f"trnsim: could not write the profile of {name} to {d} "
                      f"(${ENV}): {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)
        return None


def _cached_profile(run, outputs, name):
    """The run's Profile, its timeline, summary and insights from the profile cache
    when an identical record was scheduled before (then stored there)."""
    from . import cache as pcache
    from .profile import Profile
    store = pcache.profile_cache()
    if not store.enabled:
        return Profile.from_run(run, outputs, name)
    key = pcache.program_key(run.program, run.chip)
    hit = store.get(key, outputs=False)
    if hit is None:
        prof = Profile.from_run(run, outputs, name)
        prof.summary  # noqa: B018 - written anyway; computed before put, so kept with it
        prof.all_insights  # noqa: B018
        store.put(key, prof)
        prof.cache, prof.cache_key = "miss", key
        return prof
    prof = Profile(run.program, hit.timeline, outputs, run, name)
    prof.__dict__.update(summary=hit.summary, all_insights=hit.all_insights)
    prof.cache, prof.cache_key = "hit", key
    return prof


def _free_stem(directory: str, name: str) -> str:
    n = 1
    while True:
        stem = name if n == 1 else f"{name}-{n}"
        if not any(os.path.exists(os.path.join(directory, stem + ext))
                   for ext in (".trace.json", ".report.html", ".summary.json")):
            return stem
        n += 1


def save_profile(prof, directory, stem: str | None = None, trace=True, report=True,
                 extra: dict | None = None) -> dict:
    """Write a profile's trace, report and summary JSON into `directory`. Returns
    {'trace': path, 'report': path, 'summary': path} (only those written)."""
    from . import views
    from .perfetto import write_perfetto
    from .report import write_report
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    name = views.kernel_name(prof)
    with _lock:
        stem = stem or _free_stem(directory, name)
        base = os.path.join(directory, stem)
        paths = {"summary": base + ".summary.json"}
        with open(paths["summary"], "w") as f:  # claims the stem first
            json.dump(summary_json(prof, extra), f, indent=1)
    if trace:
        paths["trace"] = write_perfetto(prof, base + ".trace.json")
    if report:
        paths["report"] = write_report(prof, base + ".report.html")
    return paths


def summary_json(prof, extra: dict | None = None) -> dict:
    """The profile as JSON: kernel, chip, total time, summary metrics and insights."""
    from . import views
    insights = []
    for ins in getattr(prof, "insights", None) or []:
        f = views.insight_fields(ins)
        insights.append({"rule": f["rule"], "title": f["title"],
                         "severity": f["criticality"], "criticality": f["share"],
                         "message": f["message"], "recommendation": f["advice"],
                         "locations": [str(x) for x in (getattr(ins, "locations", None)
                                                        or [ln["where"] for ln in f["lines"]])]})
    out = {"kernel": views.kernel_name(prof), "chip": views.chip_name(prof.chip),
           "lnc": int(getattr(prof.program, "lnc", 1) or 1),
           "instructions": len(prof.program.instructions),
           "total_time": float(prof.total_time),
           "summary": views.jsonable(dict(getattr(prof, "summary", {}) or {})),
           "insights": insights}
    if getattr(prof, "cache", None) is not None:
        out.update(cache=prof.cache, cache_key=prof.cache_key)
    if extra:
        out.update(views.jsonable(extra))
    return out
