"""Ordered delivery's cost: an ordered endpoint with 1,000 subjects against unordered.

    .venv/bin/hookstream bench --scenario ordered

The same backlog of `events` (ten endpoints, each with 1,000 subjects) is
drained on fresh topics with every endpoint `ordering: "none"`, and with
`ordering: "subject"`. One drain's rate moves with the run's order on a busy
machine (the first of two ran at 0.6× the second), so the modes alternate
A B B A for `rounds` rounds and the figure is the ratio of the medians of
their sustained rates (≥ 0.5 is the goal); no drain may lose an event.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from bench.harness import Progress, Servers, publish, rig
from bench.scenarios import ENDPOINTS, PAD, _drain, _sustained

SUBJECTS = 1000  # per endpoint


async def run(where: Servers, *, workers: int, events: int, rounds: int = 2) -> dict[str, Any]:
    """Drain the same backlog unordered and ordered, alternating; their rates and ratio."""
    figures: dict[str, Any] = {"scenario": "ordered", "workers": workers, "events": events}
    lost = duplicates = 0
    rates: dict[str, list[float]] = {"none": [], "subject": []}
    order = [("none", "subject") if n % 2 == 0 else ("subject", "none") for n in range(rounds)]
    for ordering in [mode for pair in order for mode in pair]:
        async with rig(where, workers=workers, endpoints=ENDPOINTS, ordering=ordering) as running:
            bar = Progress(f"publish ({ordering})", events)
            await publish(
                running.settings, events, kinds=ENDPOINTS, pad=PAD, progress=bar.show,
                subjects=SUBJECTS,
            )  # fmt: skip
            bar.close()
            samples = await _drain(running, events, f"ordering={ordering}", timeout=900)
            stats = await running.sink_stats()
            rates[ordering].append(round(_sustained(samples, events), 1))
            lost += events - stats["distinct"]
            duplicates += stats["duplicates"]
    for ordering, seen in rates.items():
        figures[f"{ordering}_deliveries_per_s"] = median(seen)
        figures[f"{ordering}_rounds_per_s"] = seen
    figures["subjects_per_endpoint"] = SUBJECTS
    figures["ordered_vs_unordered"] = round(
        figures["subject_deliveries_per_s"] / figures["none_deliveries_per_s"], 3
    )
    figures["duplicates"] = duplicates
    figures["lost"] = lost
    return figures
