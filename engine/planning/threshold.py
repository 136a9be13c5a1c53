"""The change threshold: a job may not remove more than a share of what a target holds
(Canvas's ``change_threshold``), whatever ``--yes`` says, unless the share is raised
explicitly.

What a target holds is counted by the backup's read where it lists whole targets (an
adapter's :class:`~unenroll.contract.declarations.EnrolmentReader` without
``max_subjects``, whose pages say how many enrolments they ``listed``). The read goes on
past the targeted learners only until the count shows the planned change is within the
share (:func:`enough_to_judge`), so the guard costs a read call only where a target is
small enough to be at risk.

Invariant (:func:`judge`): a target is over the threshold when its read ended (the count
is whole) and the planned changes are more than ``share`` of it; a read that stopped short
of both its end and :func:`enough_to_judge` is not counted, and is judged over as well
(never conclude from what was not said). Targets holding fewer than
:data:`MIN_ENROLMENTS_JUDGED` are not judged: removing 3 of 4 is a small change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

MIN_ENROLMENTS_JUDGED = 10

Target = tuple[str, ...]


def read_key(operation: str, target: Target) -> str:
    """The key a whole-target read is journaled under (see ``backup._Read.key``)."""
    return f"{operation}\x1f{'/'.join(target)}"


def enough_to_judge(planned: Mapping[tuple[str, Target], int], percent: float) -> dict[str, int]:
    """Per whole-target read: the enrolments a target must hold for its planned changes to be
    within ``percent`` of it (and at least :data:`MIN_ENROLMENTS_JUDGED`)."""
    return {read_key(operation, target): max(MIN_ENROLMENTS_JUDGED, math.ceil(n * 100.0 / percent))
            for (operation, target), n in planned.items() if n}


@dataclass(frozen=True, slots=True)
class Breach:
    """A target whose planned changes are more than the threshold allows."""

    operation: str
    target: Target
    planned: int
    enrolled: int | None  # None: the read did not count it to the end

    def describe(self) -> str:
        where = f"{self.operation} {'/'.join(self.target)}"
        if self.enrolled is None:
            return f"{where}: {self.planned:,} changes, and the backup's read did not count what it holds"
        share = 100.0 * self.planned / self.enrolled if self.enrolled else 100.0
        return f"{where}: {self.planned:,} of its {self.enrolled:,} enrolments ({share:.0f}%)"


def judge(planned: Mapping[tuple[str, Target], int], listed: Mapping[str, tuple[int, bool]],
          percent: float) -> list[Breach]:
    """The targets over ``percent`` (see the module's invariant), largest change first.
    ``listed``: per read key, the enrolments the read listed and whether it reached the end;
    targets without a whole-target read are not in it and not judged."""
    need = enough_to_judge(planned, percent)
    breaches: list[Breach] = []
    for (operation, target), n in planned.items():
        key = read_key(operation, target)
        if not n or key not in listed:
            continue
        count, ended = listed[key]
        if count >= need[key]:
            continue  # big enough: within the threshold
        if not ended:
            breaches.append(Breach(operation, target, n, None))
        elif count >= MIN_ENROLMENTS_JUDGED:
            breaches.append(Breach(operation, target, n, count))
    return sorted(breaches, key=lambda b: -b.planned)
