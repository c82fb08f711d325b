"""Timing: the cost model and scheduler that turn an instruction record into a timeline.

    timeline = trnsim.timing.schedule(run.program)   # chip: the program's (or chip=...)
"""
from .scheduler import schedule  # noqa: F401
from .timeline import ENGINE_TRACKS, Event, Timeline, Wait  # noqa: F401
