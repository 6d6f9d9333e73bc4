"""Where a new endpoint's deliveries go: the partition of `deliveries` its id hashes to.

Delivery records, retry tiers and ordered chains are keyed by endpoint id, so
an endpoint's id decides which partition, and so which worker, carries all of
its traffic. Ids drawn at random put 10 endpoints on 12 partitions unevenly:
one worker can carry twice the other's deliveries and run alone at the end of
a backlog. A new endpoint's id is drawn again until it hashes to the partition
with the fewest endpoints, the earliest in `spread_order` among equals, so
that any contiguous range of partitions (what the dispatcher's range
assignment gives each worker) holds its share (decision 031).

Pure: the hash is the caller's (`partition_of`), the same one its producers use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from hookstream.engine.endpoint import new_endpoint_id

DRAWS_PER_PARTITION = 64  # past partitions × this many draws, the last id is taken as it is


@functools.cache
def spread_order(partitions: int) -> tuple[int, ...]:
    """0 … partitions-1 in an order whose every prefix is spread over the range:
    split into contiguous ranges for 2 to 8 workers, as the range assignor splits
    them, the first k hold each range's share of k within one or two.

    Greedy: each next partition is the one that keeps the worst range's count
    nearest its share. Computed once per count (0.3 s for 256 partitions);
    12 gives 0, 6, 9, 3, 4, 10, 1, 7, 11, 2, 8, 5."""
    if partitions < 1:
        raise ValueError("partitions must be 1 or more")
    splits = [_ranges(partitions, workers) for workers in range(2, min(partitions, 8) + 1)]
    counts = [[0] * len(sizes) for _, sizes in splits]
    left = list(range(partitions))
    order: list[int] = []
    for k in range(1, partitions + 1):
        chosen = min(
            left, key=functools.partial(_cost, share=k / partitions, splits=splits, counts=counts)
        )
        left.remove(chosen)
        order.append(chosen)
        for (owner, _), held in zip(splits, counts, strict=True):
            held[owner[chosen]] += 1
    return tuple(order)


Split = tuple[list[int], list[int]]


def _cost(
    partition: int, share: float, splits: list[Split], counts: list[list[int]]
) -> tuple[float, float, int]:
    """How far from its share (`share` × its size) the worst range would be with
    `partition` taken next: the worst over the splits, their sum, the partition."""
    worst = []
    for (owner, sizes), held in zip(splits, counts, strict=True):
        held[owner[partition]] += 1
        worst.append(max(abs(h - share * size) for h, size in zip(held, sizes, strict=True)))
        held[owner[partition]] -= 1
    return (max(worst, default=0.0), sum(worst), partition)


def _ranges(partitions: int, workers: int) -> Split:
    """How the range assignor splits `partitions` over `workers`: each partition's
    worker, and each worker's count (the first `partitions % workers` get one more)."""
    base, extra = divmod(partitions, workers)
    sizes = [base + (1 if w < extra else 0) for w in range(workers)]
    return [w for w, size in enumerate(sizes) for _ in range(size)], sizes


def least_used(endpoints: Mapping[int, int], partitions: int) -> int:
    """The partition with the fewest `endpoints` (partition → count, absent is 0),
    the earliest in `spread_order` among equals."""
    return min(spread_order(partitions), key=lambda p: endpoints.get(p, 0))  # first of equals


def id_in(
    partition: int,
    partitions: int,
    partition_of: Callable[[str, int], int],
    *,
    draw: Callable[[], str] = new_endpoint_id,
) -> str:
    """A fresh endpoint id with `partition_of(id, partitions) == partition`: about
    `partitions` draws on average."""
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} is not one of 0 … {partitions - 1}")
    endpoint_id = draw()
    for _ in range(partitions * DRAWS_PER_PARTITION):
        if partition_of(endpoint_id, partitions) == partition:
            return endpoint_id
        endpoint_id = draw()
    return endpoint_id  # (1 - 1/n)^(64n) < 1e-27: never in practice, and still a valid id
