"""Parity records: how far isoform's outputs are from transformers', one row per comparison, for the parity table.

    parity.record("bert", "masked-lm", "torch", "float32", 3.1e-6)   # one row, in this process
    parity.record_model(model, diff)        # the same, read from a loaded `isoform.Model`; returns ``diff``
    parity.write("/tmp/parity_runs")        # the rows as JSON lines, one file per process (xdist worker)

The parity tests record each comparison before asserting it, so failures are recorded too;
``tests/conftest.py`` writes the rows at the end of the session when ``ISOFORM_PARITY_DIR`` is set, and
``python -m isoform.testing.parity_table --runs DIR`` merges the files into ``docs/parity.json`` and
``docs/parity.md``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

_ROWS: list[dict[str, Any]] = []


def _current_test() -> str:
    """The running pytest test's node id (pytest sets ``PYTEST_CURRENT_TEST`` as "<nodeid> (call)"), else ""."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


def record(model_type: str, task: str | None, backend: str, dtype: str, max_abs_diff: float, case: str = "") -> None:
    """Append one row: the largest absolute difference over all outputs of one comparison with transformers.
    ``case`` defaults to the running test's node id."""
    _ROWS.append({"model_type": str(model_type), "task": task, "backend": str(backend), "dtype": str(dtype),
                  "max_abs_diff": float(max_abs_diff), "case": case or _current_test()})


def record_model(model: Any, max_abs_diff: float, *, dtype: str | None = None, case: str = "") -> float:
    """`record` for a loaded `isoform.Model` (its ``arch.model_type``, ``task``, ``backend.name`` and, unless
    given, ``dtype``); returns ``max_abs_diff``, so a test can write ``assert record_model(model, d) <= TOL``."""
    record(model.arch.model_type, model.task, model.backend.name, dtype or model.dtype, max_abs_diff, case)
    return max_abs_diff


def rows() -> list[dict[str, Any]]:
    """The rows recorded in this process so far (copies)."""
    return [dict(r) for r in _ROWS]


def clear() -> None:
    """Forget the rows recorded so far."""
    _ROWS.clear()


def file_name() -> str:
    """``<xdist worker id>-<pid>.jsonl`` under pytest-xdist, else ``<pid>.jsonl``: the pid keeps a second run
    into the same directory from overwriting the first (empty the directory to start a fresh table)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"{worker}-{os.getpid()}.jsonl" if worker else f"{os.getpid()}.jsonl"


def write(directory: str | os.PathLike[str]) -> Path | None:
    """Write the rows as JSON lines to ``<directory>/`` `file_name` (the directory is created); nothing
    (None) when no row was recorded. Non-finite differences are written as the strings "inf" / "nan"."""
    if not _ROWS:
        return None
    path = Path(directory) / file_name()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({**r, "max_abs_diff": encode(r["max_abs_diff"])}) + "\n" for r in _ROWS]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def encode(value: float) -> float | str:
    """A difference as strict JSON: finite floats as is, inf / nan as strings (``float()`` reads them back)."""
    return value if math.isfinite(value) else str(value)
