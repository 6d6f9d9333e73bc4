"""`hookstream bench --profile`: a py-spy flame graph of a worker while it works."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def py_spy() -> str:
    """The py-spy command (the dev extras install it); SystemExit when it is missing."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return found


@contextlib.contextmanager
def flame_graph(pid: int, path: Path | None) -> Iterator[None]:
    """Sample process `pid` 100 times a second while the block runs; write an SVG to
    `path` (nothing when it is None)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [py_spy(), "record", "--pid", str(pid), "--rate", "100", "--output", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes the graph when interrupted
        _, err = spy.communicate(timeout=120)
        if not path.exists():
            raise SystemExit(f"py-spy wrote no flame graph: {err.decode(errors='replace')[-500:]}")
