"""Gap-aware commits: never past a record without a durable outcome."""

from __future__ import annotations

import pytest

from hookstream.engine.offsets import OffsetTracker

TP = ("deliveries", 0)


def test_nothing_to_commit_before_anything_starts() -> None:
    assert OffsetTracker().committable() == {}


def test_commit_stops_at_the_lowest_unfinished_offset() -> None:
    t = OffsetTracker()
    for offset in range(10, 15):
        t.start(TP, offset)
    assert t.committable() == {TP: 10}
    t.finish(TP, 12)
    t.finish(TP, 13)
    assert t.committable() == {TP: 10}
    t.finish(TP, 10)
    assert t.committable() == {TP: 11}
    t.finish(TP, 11)
    assert t.committable() == {TP: 14}
    t.finish(TP, 14)
    assert t.committable() == {TP: 15}
    assert t.in_flight(TP) == 0


def test_a_hanging_record_holds_the_commit_however_many_finish_after_it() -> None:
    t = OffsetTracker()
    for offset in range(1000):
        t.start(TP, offset)
    for offset in range(1, 1000):
        t.finish(TP, offset)
    assert t.committable() == {TP: 0}
    assert t.in_flight(TP) == 1


def test_committed_offsets_are_not_offered_again() -> None:
    t = OffsetTracker()
    t.start(TP, 0)
    t.finish(TP, 0)
    t.mark_committed(t.committable())
    assert t.committable() == {}
    t.start(TP, 1)
    assert t.committable() == {}
    t.finish(TP, 1)
    assert t.committable() == {TP: 2}


def test_partitions_are_independent() -> None:
    t = OffsetTracker()
    other = ("deliveries", 1)
    t.start(TP, 5)
    t.start(other, 7)
    t.finish(other, 7)
    assert t.committable() == {TP: 5, other: 8}


def test_forgotten_partitions_ignore_late_finishes() -> None:
    t = OffsetTracker()
    t.start(TP, 3)
    t.forget(TP)
    t.finish(TP, 3)
    assert t.committable() == {}


def test_out_of_order_starts_are_a_bug() -> None:
    t = OffsetTracker()
    t.start(TP, 5)
    with pytest.raises(ValueError, match="out of order"):
        t.start(TP, 5)
