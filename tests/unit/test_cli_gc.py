"""Every `hookstream` command runs with the collector's thresholds of decision 041."""

from __future__ import annotations

import gc

from hookstream.cli import GC_THRESHOLDS, _run


def test_a_command_runs_with_the_collectors_thresholds() -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    async def command() -> int:
        seen.append(gc.get_threshold())
        return 0

    try:
        assert _run(command()) == 0
    finally:
        gc.set_threshold(*before)
    assert seen == [GC_THRESHOLDS]
    assert GC_THRESHOLDS[0] > before[0]  # fewer collections than Python's default
