"""Tenants and the event-type catalog: what they hold and how an input becomes one."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson
from jsonschema import Draft202012Validator, SchemaError

from hookstream.engine.clock import Clock, rfc3339, system_clock
from hookstream.engine.event import EVENT_TYPE_RE, ID_RE, MAX_TYPE_LENGTH
from hookstream.errors import FieldProblem, InvalidInput

MAX_NAME = 200
MAX_DESCRIPTION = 1000
MAX_METADATA_KEYS = 50
MAX_METADATA_VALUE = 1000
MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_ERRORS = 20


@dataclass(frozen=True, slots=True)
class Tenant:
    """The customer that owns endpoints."""

    id: str
    name: str
    created_at: str
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The tenant as the API shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "metadata": self.metadata,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Tenant:
        """Rebuild from `to_dict` output."""
        return cls(raw["id"], raw["name"], raw["created_at"], raw.get("metadata", {}))


def new_tenant(raw: dict[str, Any], clock: Clock = system_clock) -> Tenant:
    """A tenant from a creation body (already of the right shape); InvalidInput if bad."""
    problems: list[FieldProblem] = []
    if not ID_RE.match(raw["id"]):
        problems.append(FieldProblem("id", "must be 1-128 characters of [a-zA-Z0-9_.:-]"))
    problems.extend(metadata_problems(raw.get("metadata", {})))
    if problems:
        raise InvalidInput(problems)
    return Tenant(
        id=raw["id"],
        name=raw.get("name") or raw["id"],
        created_at=rfc3339(clock()),
        metadata=raw.get("metadata", {}),
    )


def metadata_problems(metadata: Any, where: str = "metadata") -> list[FieldProblem]:
    """What is wrong with a metadata object of string values (empty when fine)."""
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS:
        return [FieldProblem(where, f"must be an object of at most {MAX_METADATA_KEYS} keys")]
    return [
        FieldProblem(f"{where}.{k}", f"must be a string of at most {MAX_METADATA_VALUE} characters")
        for k, v in metadata.items()
        if not isinstance(v, str) or len(v) > MAX_METADATA_VALUE or not 0 < len(k) <= 100
    ]


@dataclass(frozen=True)
class EventType:
    """A documented event type; with a schema, ingest validates `data` against it."""

    name: str
    description: str
    created_at: str
    schema: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event type as the API shows it."""
        return {
            "name": self.name,
            "description": self.description,
            "schema": self.schema,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EventType:
        """Rebuild from `to_dict` output."""
        return cls(raw["name"], raw.get("description", ""), raw["created_at"], raw.get("schema"))

    @cached_property
    def _validator(self) -> Draft202012Validator | None:
        return None if self.schema is None else Draft202012Validator(self.schema)

    def data_problems(self, data: Any, where: str = "data") -> list[FieldProblem]:
        """Where `data` breaks this type's schema (empty when it conforms or there is none)."""
        if self._validator is None:
            return []
        problems = []
        try:
            for error in self._validator.iter_errors(data):
                path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
                problems.append(FieldProblem(where + path, error.message[:300]))
                if len(problems) == MAX_SCHEMA_ERRORS:
                    break
        except Exception as exc:  # e.g. a $ref that cannot be resolved: never fetched
            return [FieldProblem(where, f"the schema of {self.name} cannot be applied: {exc}")]
        return problems


def new_event_type(raw: dict[str, Any], clock: Clock = system_clock) -> EventType:
    """An event type from a creation body; InvalidInput names a bad name or schema."""
    name = raw["name"]
    problems: list[FieldProblem] = []
    if len(name) > MAX_TYPE_LENGTH or not EVENT_TYPE_RE.match(name):
        problems.append(FieldProblem("name", "must be dot-separated words of [a-zA-Z0-9_]"))
    schema = raw.get("schema")
    if schema is not None:
        if len(orjson.dumps(schema)) > MAX_SCHEMA_BYTES:
            problems.append(FieldProblem("schema", f"at most {MAX_SCHEMA_BYTES} bytes of JSON"))
        else:
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                problems.append(FieldProblem("schema", f"not a JSON Schema: {exc.message}"))
    if problems:
        raise InvalidInput(problems)
    return EventType(name, raw.get("description", ""), rfc3339(clock()), schema)
