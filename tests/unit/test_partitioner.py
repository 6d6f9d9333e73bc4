"""The producers' partitioner: aiokafka's murmur2 placement, remembered per key."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from hookstream.kafka import KeyedPartitioner, key_partition


def test_every_key_lands_where_the_default_partitioner_puts_it() -> None:
    # Co-partitioned topics (deliveries, tiers, ordering) and existing data rely on it.
    rng = random.Random(7)
    keyed, default = KeyedPartitioner(), DefaultPartitioner()
    keys = [f"ep_{rng.getrandbits(64):016x}".encode() for _ in range(300)]
    keys += [b"", b"a", b"ab", b"abc", "é-ünïcode".encode(), bytes(range(256))]
    for count in (1, 3, 4, 12, 64):
        partitions = list(range(count))
        for key in keys * 2:  # the second pass is answered from memory
            assert keyed(key, partitions, partitions) == default(key, partitions, partitions)


def test_memory_is_bounded_and_answers_stay_right_after_it_is_forgotten() -> None:
    keyed, default = KeyedPartitioner(max_keys=10), DefaultPartitioner()
    partitions = list(range(8))
    for i in range(35):
        key = f"evt_{i}".encode()
        assert keyed(key, partitions, partitions) == default(key, partitions, partitions)
        assert len(keyed._hashes) <= 10


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    keyed = KeyedPartitioner()
    for _ in range(50):
        assert keyed(None, [0, 1, 2, 3], [1, 3]) in (1, 3)
        assert keyed(None, [0, 1, 2, 3], []) in (0, 1, 2, 3)


def test_key_partition_is_where_the_producers_put_a_key() -> None:
    # Endpoint placement (engine/placement.py) draws ids by it.
    rng = random.Random(11)
    default = DefaultPartitioner()
    for count in (1, 4, 12, 50):
        partitions = list(range(count))
        for _ in range(200):
            key = f"ep_{rng.getrandbits(96):024x}"
            assert key_partition(key, count) == default(key.encode(), partitions, partitions)
