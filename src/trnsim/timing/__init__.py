"""Timing: the cost model and scheduler that turn an instruction record into a timeline."""
from .timeline import ENGINE_TRACKS, Event, Timeline, Wait  # noqa: F401
