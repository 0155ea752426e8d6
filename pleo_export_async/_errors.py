"""The exception hierarchy. Every error the library raises derives from `PleoExportError`.

Messages are written for an operator reading a log line: they name the job, the field, the value
or the HTTP status, and never contain a credential (the transport strips them before raising).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import UpdateReport


class PleoExportError(Exception):
    """Base class of every error raised by pleo_export_async."""

    #: Set when `JobRun.update()` stopped on this error: what the call settled before stopping.
    report: UpdateReport | None = None

    def __reduce__(self) -> tuple[object, ...]:
        # The subclasses' constructors take their fields, not the message in `args`: pickled
        # (into another process, say) the error is rebuilt from its message and attributes.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    kind: type[PleoExportError], args: tuple[object, ...], state: dict[str, object]
) -> PleoExportError:
    error = kind.__new__(kind, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class InvalidInput(PleoExportError, ValueError):
    """A value given to the library is not valid; raised before any request is sent."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}={_short_repr(value)}: {problem}")


class ConflictingUpdates(InvalidInput):
    """One `update()` call holds two different updates for the same accountingEntryId."""

    def __init__(self, accounting_entry_id: str, first: object | None, second: object) -> None:
        # The first may be known only by its fingerprint, once Pleo has acknowledged it.
        earlier = "an earlier one" if first is None else repr(first)
        super().__init__(
            "accounting_entry_id",
            accounting_entry_id,
            f"two different updates in one call: {earlier} and {second!r}",
        )


class TransportError(PleoExportError):
    """No answer came: the connection failed or timed out on every attempt the retry policy
    allowed (`attempts` says how many).

    The message names the request, host:port and the cause: connection refused, name not
    resolved, TLS failure (with the reason), no answer within N s, server closed the connection,
    or the operating system's words. Until a client has had any answer from Pleo, a refused
    connection or a name that does not resolve is almost always a wrong base URL: the request
    gives up after at most 3 attempts and about 5 seconds, and the message says it never reached
    host:port and to check the base URL. Once Pleo has answered, the whole policy applies."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        self.attempts = attempts
        super().__init__(message)


class ApiError(PleoExportError):
    """Pleo answered with an error status that the library does not handle by itself."""

    def __init__(
        self,
        status: int,
        error_type: str | None,
        message: str | None,
        *,
        method: str = "",
        path: str = "",
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.error_type = error_type
        self.message = message
        self.method = method
        self.path = path
        self.attempts = attempts
        where = f"{method} {path}: " if method else ""
        kind = f" {error_type}" if error_type else ""
        detail = f": {message}" if message else ""
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{where}HTTP {status}{kind}{detail}{tries}")


class AuthenticationError(ApiError):
    """401: the credential was refused (and could not be refreshed)."""


class PermissionDenied(ApiError):
    """403: the credential lacks the scope or access for this request."""


class JobNotFound(ApiError):
    """404 EXPORT_NOT_FOUND: Pleo does not know this export job."""


class MissingContraAccounts(ApiError):
    """400 MISSING_CONTRA_ACCOUNTS: the company's contra accounts are not mapped in Pleo.

    Until a bookkeeper maps them, Pleo gives no export data for the job; fail the job
    (`job.fail(...)`, e.g. with `missing_configuration`) or leave it to expire."""


class ReauthorizationRequired(AuthenticationError):
    """The refresh token was refused for good (`invalid_grant`, `invalid_refresh_token`): a user
    must authorise the integration again. Retrying cannot help."""


class JobFinished(PleoExportError):
    """The export job is final; no further item updates or events are possible."""

    def __init__(self, job_id: str, detail: str = "") -> None:
        self.job_id = job_id
        suffix = f": {detail}" if detail else ""
        super().__init__(f"export job {job_id} is finished{suffix}")


class JobStateConflict(PleoExportError):
    """Pleo refused a job event because the job is in a state that does not allow it."""

    def __init__(self, job_id: str, event: str, job_status: str | None) -> None:
        self.job_id = job_id
        self.event = event
        self.job_status = job_status
        super().__init__(
            f"export job {job_id}: event {event!r} refused, the job is {job_status or 'unknown'}"
        )


class IncompleteJob(PleoExportError):
    """`complete()` was called while some submitted items are still unacknowledged."""

    def __init__(self, job_id: str, unacknowledged: Collection[str], detail: str = "") -> None:
        self.job_id = job_id
        self.unacknowledged = frozenset(unacknowledged)
        shown = sorted(self.unacknowledged)[:10]
        more = len(self.unacknowledged) - len(shown)
        listing = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        reason = detail or f"{len(self.unacknowledged)} item(s) not acknowledged: {listing}"
        super().__init__(f"export job {job_id} cannot be completed: {reason}; no event was sent")


class UnexpectedResponse(PleoExportError):
    """Pleo answered 2xx with a body that does not have the documented shape."""


class LedgerError(PleoExportError):
    """The ledger cannot be opened or written: a corrupt file, an unknown schema version, or a
    database that cannot be reached."""


class JobLeased(PleoExportError):
    """Another worker holds the job's lease, and the call was told not to wait (`wait=False`)."""

    def __init__(self, job_id: str, holder: str, detail: str = "") -> None:
        self.job_id = job_id
        self.holder = holder
        suffix = f" {detail}" if detail else ""
        super().__init__(f"export job {job_id} is being worked by {holder}{suffix}")


class LeaseLost(LedgerError):
    """This worker no longer holds the job's lease (its renewals failed, or it expired and
    another worker took the job): it sent nothing more for the job. Another worker resumes it
    from the ledger."""

    def __init__(self, job_id: str, detail: str) -> None:
        self.job_id = job_id
        super().__init__(f"lost the lease on export job {job_id}: {detail}")


def _short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
