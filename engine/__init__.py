"""unenroll: bulk unenrollment across learning platforms, as fast as each vendor's
documented limits allow, with an exact account of every item.

    report = await unenroll.run(adapter, items)
"""

from .adapter import Adapter, EndpointSpec, Operation
from .journal import Journal, JournalError, JournalLocked
from .ledger import AccountingError, Report
from .limiter import CallLimiter, RollingWindowLimiter
from .model import Item, ItemOutcome, Outcome, Unreadable
from .pipeline import Job, JobSettings, OutcomeStream, run, stream
from .retry import RetryPolicy
from .secrets import Secret
from .sinks import ResultsWriter

__all__ = [
    "AccountingError",
    "Adapter",
    "CallLimiter",
    "EndpointSpec",
    "Item",
    "ItemOutcome",
    "Job",
    "JobSettings",
    "Journal",
    "JournalError",
    "JournalLocked",
    "Operation",
    "Outcome",
    "OutcomeStream",
    "Report",
    "ResultsWriter",
    "RetryPolicy",
    "RollingWindowLimiter",
    "Secret",
    "Unreadable",
    "run",
    "stream",
]
__version__ = "0.1.0"
