"""Shared helpers for the benchmarks: timing, tables, results files."""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CHECKPOINTS = Path(tempfile.gettempdir()) / "isoform-bench"


def random_checkpoint(name: str, model_class: str, config_class: str, **config: Any) -> Path:
    """A random-init (seed 0) `transformers` model saved with save_pretrained under the temp dir,
    built on the first call and reused after."""
    path = CHECKPOINTS / name
    if not (path / "model.safetensors").exists():
        import torch
        import transformers

        torch.manual_seed(0)
        model = getattr(transformers, model_class)(getattr(transformers, config_class)(**config))
        model.eval().save_pretrained(path)
    return path


def time_call(fn: Callable[[], Any], *, repeat: int = 7, min_time: float = 0.2) -> dict[str, float]:
    """Seconds per call: calibrate a loop count that runs >= min_time, then take `repeat` loops;
    returns min/median/max per call."""
    fn()
    number, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            break
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9)))
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return {"min": min(runs), "median": statistics.median(runs), "max": max(runs)}


def first_call(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"machine": {"python": platform.python_version(), "processor": platform.processor(),
                        "machine": platform.machine()}, **data}
    path.write_text(json.dumps(data, indent=2))
    return path
