"""unenroll: bulk unenrollment across learning platforms, as fast as each vendor's
documented limits allow, with an exact account of every item.

    report = await unenroll.run(adapter, items)
"""

from unenroll.accounts.journal import Journal, JournalError, JournalLocked
from unenroll.accounts.ledger import AccountingError, Report
from unenroll.accounts.results import ResultsWriter
from unenroll.contract.declarations import Adapter, EndpointSpec, Operation
from unenroll.job.job import Job
from unenroll.job.retry import RetryPolicy
from unenroll.job.settings import JobSettings
from unenroll.job.stream import OutcomeStream, run, stream
from unenroll.limits.window import CallLimiter, RollingWindowLimiter
from unenroll.model import Item, ItemOutcome, Outcome, Unreadable
from unenroll.observe.secrets import Secret

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
