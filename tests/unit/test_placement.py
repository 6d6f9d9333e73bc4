"""Endpoint placement: new ids spread endpoints over the partitions of `deliveries`."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from hookstream.engine.placement import _ranges, id_in, least_used, spread_order
from hookstream.kafka import key_partition


@pytest.mark.parametrize("partitions", [*range(1, 41), 48, 64, 100])
def test_every_prefix_of_the_order_is_spread_over_any_range_split(partitions: int) -> None:
    order = spread_order(partitions)
    assert sorted(order) == list(range(partitions))
    for workers in range(1, min(partitions, 8) + 1):
        owner, sizes = _ranges(partitions, workers)
        for k in range(1, partitions + 1):
            held = Counter(owner[p] for p in order[:k])
            for w, size in enumerate(sizes):
                # Within one endpoint of the range's share of k (a share is fractional).
                assert abs(held[w] - k * size / partitions) < 2, (workers, k, dict(held))


def test_twelve_partitions_split_ten_endpoints_five_and_five_over_two_workers() -> None:
    # The bench's shape: 10 endpoints, 12 partitions, 2 workers (0-5 and 6-11).
    first_ten = spread_order(12)[:10]
    assert sum(p < 6 for p in first_ten) == 5
    assert [sum(4 * w <= p < 4 * w + 4 for p in first_ten) for w in range(3)] in (
        [4, 3, 3],
        [3, 4, 3],
        [3, 3, 4],
    )


def test_range_split_matches_the_range_assignor() -> None:
    # Kafka's RangeAssignor: the first `partitions % workers` members get one more.
    assert _ranges(12, 5) == ([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4], [3, 3, 2, 2, 2])
    assert _ranges(4, 4) == ([0, 1, 2, 3], [1, 1, 1, 1])


def test_no_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="1 or more"):
        spread_order(0)


def test_least_used_takes_the_emptiest_partition_and_the_order_breaks_ties() -> None:
    assert least_used({}, 12) == 0
    assert least_used({0: 1}, 12) == 6
    assert least_used({p: 1 for p in range(12)} | {4: 0}, 12) == 4
    assert least_used({p: 2 for p in range(12)} | {3: 1, 11: 1}, 12) == 3  # 3 comes first
    assert least_used({0: 5, 1: 5, 3: 4}, 4) == 2  # absent counts as none
    assert least_used({0: -1}, 1) == 0


def test_filling_by_least_used_keeps_every_partition_within_one() -> None:
    taken: Counter[int] = Counter()
    for n in range(1, 50):
        taken[least_used(taken, 7)] += 1
        assert max(taken[p] for p in range(7)) - min(taken[p] for p in range(7)) <= 1, n


def test_a_drawn_id_hashes_to_the_partition_asked_for() -> None:
    for partitions in (1, 2, 4, 12, 64):
        for partition in {0, partitions // 2, partitions - 1}:
            endpoint_id = id_in(partition, partitions, key_partition)
            assert key_partition(endpoint_id, partitions) == partition
            assert endpoint_id.startswith("ep_")
            assert len(endpoint_id) == 27


def test_drawing_stops_after_a_bounded_number_of_tries() -> None:
    # A hash that never answers the partition asked for: the last draw is taken.
    draws = (f"ep_{n:024x}" for n in itertools.count())
    drawn: list[str] = []

    def draw() -> str:
        drawn.append(next(draws))
        return drawn[-1]

    endpoint_id = id_in(1, 3, lambda _id, _n: 0, draw=draw)
    assert endpoint_id == drawn[-1]
    assert len(drawn) == 3 * 64 + 1


@pytest.mark.parametrize("partition", [-1, 4])
def test_a_partition_outside_the_topic_is_refused(partition: int) -> None:
    with pytest.raises(ValueError, match="not one of"):
        id_in(partition, 4, key_partition)
