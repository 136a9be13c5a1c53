"""Durations in words, the one way the plan, the backup plan and the progress line say them.

``format_duration(12.5) == "12.5 s"``, ``format_duration(192) == "3 min 12 s"``,
``format_duration(3600) == "1 h"``, ``format_duration(7980) == "2 h 13 min"``: three
significant figures below a minute, whole minutes and seconds below an hour, whole hours
and minutes above (a zero part is left out).
"""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"
