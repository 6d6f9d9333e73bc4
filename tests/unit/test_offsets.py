"""Gap-aware commits: never past a record without a durable outcome."""

from __future__ import annotations

import pytest

from hookstream.engine.offsets import Hole, HoleWatch, OffsetTracker

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


def test_the_tracker_expects_one_past_the_highest_started() -> None:
    tracker = OffsetTracker()
    assert tracker.expected("p") is None
    tracker.start("p", 7)
    tracker.start("p", 8)
    tracker.finish("p", 8)
    assert tracker.expected("p") == 9
    tracker.forget("p")
    assert tracker.expected("p") is None


def test_a_contiguous_record_is_no_hole() -> None:
    watch = HoleWatch(accept_after_s=30)
    assert watch.check("p", None, 500, now=0) is Hole.NONE  # nothing started since assignment
    assert watch.check("p", 10, 10, now=0) is Hole.NONE
    assert watch.check("p", 10, 9, now=0) is Hole.NONE  # read again after a seek back


def test_a_hole_is_read_again_until_it_fills() -> None:
    watch = HoleWatch(accept_after_s=30)
    assert watch.check("p", 10, 14, now=0) is Hole.NEW
    assert watch.check("p", 10, 14, now=1) is Hole.AGAIN
    assert watch.check("p", 10, 12, now=2) is Hole.AGAIN  # partly visible: still a hole
    assert watch.check("p", 10, 10, now=3) is Hole.NONE  # filled
    # Filled holes are forgotten: the same expected offset later is a new hole.
    assert watch.check("p", 10, 11, now=4) is Hole.NEW


def test_a_hole_that_outlives_the_patience_is_accepted_once() -> None:
    watch = HoleWatch(accept_after_s=30)
    assert watch.check("p", 10, 14, now=0) is Hole.NEW
    assert watch.check("p", 10, 14, now=29) is Hole.AGAIN
    assert watch.check("p", 10, 14, now=31) is Hole.ACCEPTED
    assert watch.check("p", 10, 14, now=32) is Hole.NEW  # forgotten once accepted


def test_holes_are_per_partition_and_forgotten_on_revocation() -> None:
    watch = HoleWatch(accept_after_s=30)
    assert watch.check("p", 10, 14, now=0) is Hole.NEW
    assert watch.check("q", 10, 14, now=0) is Hole.NEW
    watch.forget("p")
    assert watch.check("p", 10, 14, now=100) is Hole.NEW
    assert watch.check("q", 10, 14, now=100) is Hole.ACCEPTED
