"""One error root for hookstream; each class says what the caller can do about it.

`retriable` follows aiokafka's convention: True when trying the same thing again
later may succeed, False when something has to change first.
"""

from __future__ import annotations

from dataclasses import dataclass


class HookstreamError(Exception):
    """Root of every error hookstream raises on purpose."""

    retriable = False


class ConfigError(HookstreamError):
    """A setting is missing or invalid; fix the configuration and start again."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid field of an input: where it is and what is wrong with it."""

    field: str
    message: str


class InvalidInput(HookstreamError):
    """An event, endpoint or other input failed validation; correct it and resend."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


class RegistryUnavailable(HookstreamError):
    """A view's tail reader died; the process cannot act on config safely until it restarts."""

    retriable = True


class DeliveryError(HookstreamError):
    """An HTTP attempt did not reach a 2xx answer; `error_class` names why in logs and attempts."""

    retriable = True
    error_class = "delivery_error"


class EndpointTimeout(DeliveryError):
    """The endpoint did not answer within the total timeout."""

    error_class = "timeout"


class EndpointUnreachable(DeliveryError):
    """The connection could not be opened (DNS, refused, reset before a response)."""

    error_class = "unreachable"


class EndpointConnectionError(DeliveryError):
    """The connection failed after it was opened (closed mid-response, protocol error)."""

    error_class = "connection_error"


class ResponseTooLarge(DeliveryError):
    """The reply body ran past the drain limit; the connection was dropped unread."""

    error_class = "response_too_large"


class RequestRefused(DeliveryError):
    """The request could not be written as it stands (a header with a line break)."""

    retriable = False
    error_class = "request_refused"


class DestinationForbidden(DeliveryError):
    """The endpoint resolves to an address this deployment refuses to call (SSRF guard)."""

    retriable = False
    error_class = "destination_forbidden"
