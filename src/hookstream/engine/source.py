"""Sources: Kafka topics hookstream routes from, in their own shape.

A source names a topic, its format and how a record becomes an event:

- `format: "json"` reads the record value as JSON. By default its fields are
  hookstream's envelope (`/id`, `/type`, `/tenant`, `/subject`,
  `/occurred_at`, `/data`, `/channels`).
- `format: "cloudevents"` reads both CloudEvents Kafka bindings: binary mode
  (`ce_*` headers, the value is `data`, decoded by `content-type`) and
  structured mode (`content-type: application/cloudevents+json`, `data` or
  `data_base64`). Either mode is first turned into the structured document,
  so defaults and a `map` point into the same shape: id ← `/id`, type ←
  `/type`, subject ← `/subject`, occurred_at ← `/time`, tenant ← the
  extension attribute `/tenant`, data ← `/data`.

A `map` entry overrides one field with a JSON Pointer (RFC 6901) into that
document, `key` (the record key as UTF-8), `header:NAME`, or `=literal`.
A record that maps to no valid event raises InvalidInput naming the field and
where it was read from; the router dead-letters it with its position.

Determinism: a record without an id gets `<source>:<partition>:<offset>`, and
one without a time gets the record's timestamp, so routing a record again
gives the same message ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hookstream.engine.clock import Clock, rfc3339, system_clock
from hookstream.engine.cloudevents import Headers, NotJson, cloudevent_document, json_value, utf8
from hookstream.engine.event import Event, validate_event
from hookstream.engine.names import ID_RE, ID_RULE, event_type_problem
from hookstream.errors import FieldProblem, InvalidInput

FORMATS = ("cloudevents", "json")
STARTS = ("latest", "earliest")
MAP_FIELDS = ("id", "type", "tenant", "subject", "occurred_at", "data", "channels")
DEFAULT_MAPS: dict[str, dict[str, str]] = {
    "json": {name: f"/{name}" for name in MAP_FIELDS},
    "cloudevents": {
        "id": "/id",
        "type": "/type",
        "tenant": "/tenant",
        "subject": "/subject",
        "occurred_at": "/time",
        "data": "/data",
    },
}
MAX_SOURCE_ID = 64
MAX_SPEC = 512
TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")  # Kafka's rule for topic names
EPOCH_MS_FROM = 10**11  # a number this large is epoch milliseconds, smaller is seconds


@dataclass(frozen=True, slots=True)
class Source:
    """A topic routed like `events`, with its format and field map."""

    id: str
    topic: str
    format: str
    map: dict[str, str]
    start: str
    created_at: str
    # partition → the offset routing starts from: the log end when the source was
    # created ("latest"), empty for "earliest" (each partition from its start).
    start_offsets: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The source as the API shows it and the `config` topic stores it."""
        return {
            "id": self.id,
            "topic": self.topic,
            "format": self.format,
            "map": self.map,
            "start": self.start,
            "start_offsets": {str(p): o for p, o in sorted(self.start_offsets.items())},
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Source:
        """Rebuild from `to_dict` output."""
        return cls(
            id=raw["id"],
            topic=raw["topic"],
            format=raw["format"],
            map=dict(raw.get("map", {})),
            start=raw.get("start", "latest"),
            created_at=raw["created_at"],
            start_offsets={int(p): int(o) for p, o in raw.get("start_offsets", {}).items()},
        )


def new_source(
    raw: dict[str, Any],
    *,
    reserved_topics: frozenset[str] = frozenset(),
    clock: Clock = system_clock,
) -> Source:
    """A source from a creation body; InvalidInput naming every bad field.

    `start_offsets` is filled in by the caller, who can read the topic's end.
    """
    problems: list[FieldProblem] = []
    if not isinstance(raw, dict):
        raise InvalidInput([FieldProblem("$", "a source must be a JSON object")])
    known = {"id", "topic", "format", "map", "start"}
    problems.extend(FieldProblem(name, "unknown field") for name in sorted(set(raw) - known))
    source_id = raw.get("id")
    if not isinstance(source_id, str) or not ID_RE.match(source_id) or len(source_id) > 64:
        problems.append(FieldProblem("id", f"is required: {ID_RULE}, at most {MAX_SOURCE_ID}"))
    topic = raw.get("topic")
    if not isinstance(topic, str) or not TOPIC_RE.match(topic) or topic in {".", ".."}:
        problems.append(FieldProblem("topic", "is required: a Kafka topic name"))
    elif topic in reserved_topics:
        problems.append(FieldProblem("topic", f"{topic} is one of hookstream's own topics"))
    fmt = raw.get("format")
    if fmt not in FORMATS:
        problems.append(FieldProblem("format", f"is required: one of {', '.join(FORMATS)}"))
    start = raw.get("start", "latest")
    if start not in STARTS:
        problems.append(FieldProblem("start", f"must be one of {', '.join(STARTS)}"))
    mapping = raw.get("map", {})
    if not isinstance(mapping, dict):
        problems.append(FieldProblem("map", "must be an object of field → where to read it"))
        mapping = {}
    for name, spec in mapping.items():
        where = f"map.{name}"
        if name not in MAP_FIELDS:
            problems.append(FieldProblem(where, f"unknown field; one of {', '.join(MAP_FIELDS)}"))
        elif not isinstance(spec, str):
            problems.append(FieldProblem(where, "must be a string"))
        elif (problem := spec_problem(name, spec)) is not None:
            problems.append(FieldProblem(where, problem))
    if problems:
        raise InvalidInput(problems)
    return Source(
        id=source_id,  # type: ignore[arg-type]
        topic=topic,  # type: ignore[arg-type]
        format=fmt,  # type: ignore[arg-type]
        map=dict(mapping),
        start=start,
        created_at=rfc3339(clock()),
    )


# -- where a field is read from ------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    text: str
    kind: str  # pointer | key | header | literal
    tokens: tuple[str, ...] = ()  # a pointer's reference tokens; a header's name

    def read(self, document: Any, key: bytes | None, headers: Headers) -> Any:
        if self.kind == "literal":
            return self.text[1:]
        if self.kind == "key":
            return _MISSING if key is None else utf8(key, "the record key")
        if self.kind == "header":
            name = self.tokens[0]
            for header, value in headers:
                if header == name:
                    return utf8(value, f"header {name}")
            return _MISSING
        return _pointer(document, self.tokens)


def parse_spec(text: str) -> _Spec:
    """Compile one `map` value; ValueError says what is wrong with it."""
    if len(text) > MAX_SPEC:
        raise ValueError(f"at most {MAX_SPEC} characters")
    if text == "key":
        return _Spec(text, "key")
    if text.startswith("header:"):
        if not text[7:]:
            raise ValueError("header: needs a header name")
        return _Spec(text, "header", (text[7:],))
    if text.startswith("="):
        return _Spec(text, "literal")
    if text == "" or text.startswith("/"):
        tokens = text.split("/")[1:]
        for token in tokens:
            if re.search(r"~(?![01])", token):
                raise ValueError("a JSON Pointer escapes only ~0 (~) and ~1 (/)")
        return _Spec(
            text, "pointer", tuple(t.replace("~1", "/").replace("~0", "~") for t in tokens)
        )
    raise ValueError('must be a JSON Pointer ("/a/b"), "key", "header:NAME" or "=literal"')


def spec_problem(name: str, text: str) -> str | None:
    """What is wrong with `text` as where field `name` is read from (None: fine)."""
    try:
        spec = parse_spec(text)
    except ValueError as exc:
        return str(exc)
    if spec.kind != "literal":
        return None
    literal = text[1:]
    if name in {"id", "tenant"} and not ID_RE.match(literal):
        return f"a literal {name} must be {ID_RULE}"
    if name == "type" and (problem := event_type_problem(literal)):
        return f"a literal type {problem}"
    if name in {"data", "channels"}:
        return f"{name} cannot be a literal string"
    return None


class _Missing:
    __slots__ = ()


_MISSING: Any = _Missing()


def _pointer(document: Any, tokens: tuple[str, ...]) -> Any:
    for token in tokens:
        if isinstance(document, dict):
            if token not in document:
                return _MISSING
            document = document[token]
        elif isinstance(document, list) and re.fullmatch(r"0|[1-9][0-9]{0,8}", token):
            index = int(token)
            if index >= len(document):
                return _MISSING
            document = document[index]
        else:
            return _MISSING
    return document


# -- a record → an event -------------------------------------------------------


class RecordMapper:
    """Turns records of one source into events: `mapper.event(key, value, headers, ...)`."""

    def __init__(self, source: Source) -> None:
        self.source = source
        specs = {**DEFAULT_MAPS[source.format], **source.map}
        self._specs = {name: parse_spec(text) for name, text in specs.items()}

    def event(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        *,
        timestamp_ms: int,
        partition: int,
        offset: int,
        max_bytes: int | None = None,
    ) -> Event:
        """The event a record carries; InvalidInput says why a record carries none."""
        if max_bytes is not None and value is not None and len(value) > max_bytes:
            too_long = f"{len(value)} bytes, over the limit of {max_bytes}"
            raise InvalidInput([FieldProblem("$", too_long)])
        if self.source.format == "cloudevents":
            document = cloudevent_document(value, headers)
        else:
            document = json_value(value, "the record value")
        raw: dict[str, Any] = {}
        problems: list[FieldProblem] = []
        for name, spec in self._specs.items():
            found = spec.read(document, key, headers)
            if found is _MISSING:
                continue
            if isinstance(found, NotJson):
                problems.append(
                    FieldProblem(name, f"is {found.content_type}, not JSON (from {spec.text})")
                )
                continue
            raw[name] = _coerced(name, found)
        if problems:
            raise InvalidInput(problems)
        raw.setdefault("id", f"{self.source.id}:{partition}:{offset}")
        raw.setdefault("occurred_at", rfc3339(timestamp_ms / 1000))
        if raw.get("subject") is None:
            raw.pop("subject", None)
        try:
            return validate_event(raw, limits_checked=True)
        except InvalidInput as exc:
            raise InvalidInput(
                [
                    FieldProblem(f"{p.field} (from {self._where(p.field)})", p.message)
                    for p in exc.problems
                ]
            ) from None

    def _where(self, name: str) -> str:
        spec = self._specs.get(name.split(".")[0])
        return spec.text if spec is not None else "?"


def _coerced(name: str, value: Any) -> Any:
    """Numbers where strings are meant, as real producers write them."""
    if isinstance(value, bool):
        return value
    if name in {"id", "subject"} and isinstance(value, int):
        return str(value)
    if name == "occurred_at" and isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= EPOCH_MS_FROM else value
        try:
            return rfc3339(seconds)
        except (OverflowError, OSError, ValueError):
            return value  # validation names it
    return value
