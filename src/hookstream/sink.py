"""`hookstream sink`: a webhook receiver that verifies signatures, answers 204, and counts.

For users testing their setup, for the tests, and for the bench. With secrets
it rejects (401) any delivery whose Standard Webhooks signature does not verify;
with none (`--no-verify`) it accepts everything.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
from aiohttp import web

from hookstream.engine.signing import InvalidSignature, verify


@dataclass(frozen=True, slots=True)
class Received:
    """One delivery as the sink saw it."""

    webhook_id: str
    event_id: str
    attempt: int
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    received_at: float
    status: int = 204  # what the sink answered

    def payload(self) -> Any:
        """The parsed JSON body."""
        return orjson.loads(self.body)


@dataclass
class SinkRecorder:
    """Everything a sink accepted, plus counts; `keep=False` keeps only counts."""

    keep: bool = True
    received: list[Received] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    failed: int = 0  # deliveries answered with a scripted failure
    by_path: Counter[str] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)  # deliveries per webhook-id

    def stats(self) -> dict[str, Any]:
        """Counts as JSON-ready data."""
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failed": self.failed,
            "by_path": self.by_path,
        }


def create_sink_app(
    secrets: Sequence[str] | None,
    recorder: SinkRecorder,
    *,
    printer: Callable[[Received], None] | None = None,
    clock: Callable[[], float] = time.time,
    latency_s: float = 0.0,
    script: Callable[[int], tuple[int, dict[str, str]]] | None = None,
) -> web.Application:
    """The receiver app: POST any path to deliver; GET /stats for counts.

    `latency_s` delays every answer, to play a slow receiver. `script` plays a
    failing one: given how many times this webhook-id has arrived (1 on the
    first), it returns the status and headers to answer with.
    """

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if latency_s:
            await asyncio.sleep(latency_s)
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = False  # no secrets: nothing to verify against
        if secrets:
            try:
                verify(secrets, headers, body, now=clock())
            except (InvalidSignature, ValueError) as exc:
                recorder.rejected += 1
                return web.json_response({"error": str(exc)}, status=401)
            verified = True
        webhook_id = headers.get("webhook-id", "")
        recorder.seen[webhook_id] += 1
        status, extra = script(recorder.seen[webhook_id]) if script else (204, {})
        received = Received(
            webhook_id=webhook_id,
            event_id=headers.get("hookstream-event-id", ""),
            attempt=int(headers.get("hookstream-attempt", "0") or 0),
            path=request.path,
            headers=headers,
            body=body,
            verified=verified,
            received_at=clock(),
            status=status,
        )
        if recorder.keep:
            recorder.received.append(received)
        if status >= 300:
            recorder.failed += 1
            return web.Response(status=status, headers=extra)
        recorder.accepted += 1
        recorder.by_path[request.path] += 1
        if printer is not None:
            printer(received)
        return web.Response(status=status, headers=extra)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(recorder.stats())

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_get("/stats", stats)
    app.router.add_post("/{tail:.*}", receive)
    return app


def line_printer(out: TextIO = sys.stdout) -> Callable[[Received], None]:
    """Prints one line per delivery: time, webhook-id, type, attempt, a preview of data."""

    def show(received: Received) -> None:
        try:
            payload = received.payload()
            kind = payload.get("type", "?")
            data = orjson.dumps(payload.get("data")).decode()
        except (orjson.JSONDecodeError, AttributeError):
            kind, data = "?", received.body[:80].decode(errors="replace")
        mark = "verified" if received.verified else "unverified"
        stamp = time.strftime("%H:%M:%S", time.localtime(received.received_at))
        preview = data if len(data) <= 100 else data[:97] + "..."
        print(
            f"{stamp} {received.webhook_id} {kind} attempt={received.attempt} {mark} {preview}",
            file=out,
            flush=True,
        )

    return show
