"""Profiling as the front ends reach it without importing what lies above them.

The front ends' own profiling entry points (`nki.benchmark`, `nki.profile`, and the
$TRNSIM_PROFILE_DIR autosave after every kernel call) need a Profile of a finished Run;
the profile package sits above the front ends, so trnsim/__init__.py installs these
three functions from it."""
from __future__ import annotations


def _missing(*_args, **_kwargs):
    raise RuntimeError("trnsim's profile hooks are not installed (import trnsim)")


profile_run = _missing  # (run, outputs=None, name=None) -> Profile
save_profile = _missing  # (profile, directory, stem=None) -> {kind: path}
autosave = _missing  # (run, fn, outputs) -> paths or None, when $TRNSIM_PROFILE_DIR is set
