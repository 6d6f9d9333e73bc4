"""direct_init: the same frozen value, with every field where the dataclass put it."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from hookstream.consumers.gates import Entry
from hookstream.egress.connection import Reply
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.event import Event
from hookstream.engine.gate import Admission
from hookstream.engine.outcome import AttemptResult, OutgoingRequest
from hookstream.engine.settle import Settlement
from hookstream.engine.values import direct_init


def _declared() -> type[Any]:
    """The class both tests build: as the dataclass makes it, and through direct_init."""

    class Declared:
        a: int
        b: str = "b"
        c: tuple[int, ...] = ()
        d: bool = dataclasses.field(default=False, kw_only=True)

    return Declared


_Plain = dataclass(frozen=True, slots=True)(_declared())


def _twin() -> type[Any]:
    """_Plain again, through direct_init."""
    return direct_init(dataclass(frozen=True, slots=True)(_declared()))


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, "x"), {}), ((1, "x", (2,)), {"d": True}), ((), {"a": 1, "c": (3,)})],
)
def test_it_builds_what_the_dataclass_builds(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    twin = _twin()
    plain, direct = _Plain(*args, **kwargs), twin(*args, **kwargs)
    assert dataclasses.astuple(plain) == dataclasses.astuple(direct)
    assert [f.name for f in dataclasses.fields(twin)] == ["a", "b", "c", "d"]


def test_its_signature_and_its_refusals_are_the_dataclass_ones() -> None:
    twin = _twin()
    assert str(inspect.signature(twin)) == str(inspect.signature(_Plain))
    wrong: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}),
        ((1, "x", (), True), {}),  # d is keyword-only
        ((1,), {"e": 5}),
        ((1,), {"a": 1}),
    ]
    for args, kwargs in wrong:
        with pytest.raises(TypeError):
            _Plain(*args, **kwargs)
        with pytest.raises(TypeError):
            twin(*args, **kwargs)


def test_the_value_stays_frozen_comparable_and_copyable() -> None:
    twin = _twin()
    value = twin(1, "x", (2,), d=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.a = 2
    assert value == twin(1, "x", (2,), d=True)
    assert hash(value) == hash(twin(1, "x", (2,), d=True))
    assert dataclasses.replace(value, b="y") == twin(1, "y", (2,), d=True)
    assert copy.copy(value) == value
    assert not hasattr(value, "__dict__")


def test_values_on_the_hot_path_survive_pickling() -> None:
    event = Event(id="evt_1", type="a.b", tenant="acme", occurred_at="t", data={"n": 1})
    assert pickle.loads(pickle.dumps(event)) == event
    task = DeliveryTask.for_event(event, "ep_1", b"{}", 5)
    assert pickle.loads(pickle.dumps(task)) == task
    assert task.occurred_at_ms == 5
    assert task.next_attempt(due_at_ms=9).attempt == 2


@pytest.mark.parametrize(
    "cls",
    [Event, DeliveryTask, Admission, Entry, OutgoingRequest, Reply, AttemptResult, Settlement],
)
def test_every_hot_value_keeps_its_dataclass_signature(cls: type[Any]) -> None:
    init = vars(cls)["__init__"]
    assert init.__qualname__ == f"{cls.__qualname__}.__init__"
    names = [f.name for f in dataclasses.fields(cls)]
    assert list(inspect.signature(init).parameters)[1:] == names
    # Each field is stored in its own slot, whatever it is given.
    required = {
        p.name: object()
        for p in inspect.signature(cls).parameters.values()
        if p.default is inspect.Parameter.empty
    }
    value = cls(**required)
    for name, given in required.items():
        assert getattr(value, name) is given


@pytest.mark.parametrize(
    "make",
    [
        lambda: dataclass(slots=True)(type("Open", (), {"__annotations__": {"a": "int"}})),
        lambda: dataclass(frozen=True)(type("NoSlots", (), {"__annotations__": {"a": "int"}})),
        lambda: type("NotADataclass", (), {}),
    ],
)
def test_it_refuses_a_class_that_is_not_a_frozen_slots_dataclass(make: Any) -> None:
    with pytest.raises(TypeError, match="frozen slots dataclass"):
        direct_init(make())


def test_it_refuses_what_it_cannot_build() -> None:
    with pytest.raises(TypeError, match="__post_init__"):

        @direct_init
        @dataclass(frozen=True, slots=True)
        class Checked:
            a: int

            def __post_init__(self) -> None:
                pass

    with pytest.raises(TypeError, match="plain init fields"):

        @direct_init
        @dataclass(frozen=True, slots=True)
        class Listed:
            a: list[int] = field(default_factory=list)

    with pytest.raises(TypeError, match="plain init fields"):

        @direct_init
        @dataclass(frozen=True, slots=True)
        class Derived:
            a: int = field(default=0, init=False)
