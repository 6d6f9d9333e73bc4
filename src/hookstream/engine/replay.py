"""What a replay asks for, checked: one endpoint, a window of record times, type globs. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from hookstream.engine.clock import parse_rfc3339
from hookstream.engine.endpoint import MAX_EVENT_TYPES
from hookstream.engine.names import glob_problem
from hookstream.errors import FieldProblem, InvalidInput


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    """Replay to `endpoint_id` the events logged in [since_ms, until_ms), maybe only some types."""

    endpoint_id: str
    since_ms: int
    until_ms: int | None = None
    event_types: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        """The spec as flat task fields."""
        return {
            "endpoint_id": self.endpoint_id,
            "since_ms": self.since_ms,
            "until_ms": "" if self.until_ms is None else self.until_ms,
            "event_types": orjson.dumps(list(self.event_types)).decode(),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> ReplaySpec:
        """Read back `fields()`."""
        return cls(
            endpoint_id=fields["endpoint_id"],
            since_ms=int(fields["since_ms"]),
            until_ms=int(fields["until_ms"]) if fields.get("until_ms") else None,
            event_types=tuple(orjson.loads(fields.get("event_types", "[]"))),
        )


def replay_spec(endpoint_id: str, raw: dict[str, Any], *, prefix: str = "") -> ReplaySpec:
    """Build a spec from a request body (`since`, `until`, `event_types`); InvalidInput names
    each bad field (`prefix` before each name, such as `replay_` for `replay_since`)."""
    problems: list[FieldProblem] = []
    times: dict[str, int | None] = {"since": None, "until": None}
    for name in times:
        value = raw.get(prefix + name)
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise ValueError
            times[name] = int(parse_rfc3339(value).timestamp() * 1000)
        except ValueError:
            problems.append(FieldProblem(prefix + name, "must be an RFC 3339 timestamp"))
    since, until = times["since"], times["until"]
    if raw.get(prefix + "since") is None:
        problems.append(FieldProblem(prefix + "since", "is required"))
    elif since is not None and until is not None and until <= since:
        problems.append(FieldProblem(prefix + "until", "must be after since"))
    globs = raw.get(prefix + "event_types", [])
    if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
        problems.append(FieldProblem(prefix + "event_types", "must be a list of strings"))
        globs = []
    elif len(globs) > MAX_EVENT_TYPES:
        problems.append(FieldProblem(prefix + "event_types", f"at most {MAX_EVENT_TYPES}"))
    for i, glob in enumerate(globs):
        if message := glob_problem(glob):
            problems.append(FieldProblem(f"{prefix}event_types[{i}]", message))
    if problems:
        raise InvalidInput(problems)
    assert since is not None
    return ReplaySpec(endpoint_id, since, until, tuple(dict.fromkeys(globs)))
