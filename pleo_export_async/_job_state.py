"""Where one JobRun stands with its job: the tracker while the job is open, and once it is over,
how it ended. The one place that says "the job is over" for the run's pieces."""

from __future__ import annotations

import attrs

from ._core._tracker import ItemTracker
from ._errors import JobFinished
from ._job_settings import JobSettings
from ._ledger import JobLedger
from ._report import CompletionOutcome


class RunState:
    def __init__(self, job_id: str, settings: JobSettings) -> None:
        self.job_id = job_id
        self.settings = settings
        self._tracker: ItemTracker | None = None
        #: The final event this run (or its ledger) delivered.
        self.outcome: CompletionOutcome | None = None
        #: Why the job is over when it was closed otherwise (Pleo shows it final).
        self.closed_otherwise: str | None = None
        #: The job's company, once the job was read (for telemetry).
        self.company_id: str | None = None

    @property
    def is_over(self) -> bool:
        return self.outcome is not None or self.closed_otherwise is not None

    def tracker(self, job_ledger: JobLedger) -> ItemTracker:
        """The run's tracker; only asked for while the job is open."""
        if self._tracker is None:
            self._tracker = ItemTracker(
                job_ledger.acknowledgements,
                self.settings.classify_item_error,
                self.settings.item_error_attempts,
            )
        return self._tracker

    @property
    def open_tracker(self) -> ItemTracker | None:
        """The tracker, if the run made one and its final event was not delivered."""
        return self._tracker

    def delivered(self, outcome: CompletionOutcome) -> None:
        """The final event is delivered: keep the outcome, let the per-item state go (R2)."""
        self.outcome = outcome
        self._tracker = None

    def found_delivered(self, recorded: CompletionOutcome) -> None:
        """The ledger holds the delivered final event. Unless this run delivered it, an earlier
        run did (another process, a replica, a run before a crash), so this run sent nothing:
        its outcome says `already_delivered`, whatever the delivering run was told."""
        if self.outcome is None:
            self.delivered(attrs.evolve(recorded, already_delivered=True))

    def closed_by_others(self, detail: str) -> None:
        """Pleo shows the job final, by an event this run did not deliver."""
        self.closed_otherwise = detail

    def raise_if_over(self) -> None:
        """Raise `JobFinished` once the job is over: nothing more is sent for it (R11)."""
        if self.outcome is not None:
            raise JobFinished(self.job_id, f"the {self.outcome.event.value} event was sent")
        if self.closed_otherwise is not None:
            raise JobFinished(self.job_id, self.closed_otherwise)
