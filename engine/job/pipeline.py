"""Where the job's entry points used to live; kept so older imports work.

The job is now in small modules, one mechanism each: ``intake.py``, ``endpoint.py``,
``calls.py``, ``verdicts.py``, ``job.py`` and ``stream.py``. Import from ``unenroll`` (or
those modules) instead.
"""

from unenroll.job.job import Job
from unenroll.job.stream import OutcomeStream, run, stream

__all__ = ["Job", "OutcomeStream", "run", "stream"]
