"""The parity table: the rows the parity tests recorded (`isoform.testing.parity`), merged into
``docs/parity.json`` and rendered as ``docs/parity.md``.

    rm -rf /tmp/parity_runs
    ISOFORM_PARITY_DIR=/tmp/parity_runs CI=true python -m pytest -q -n 2 <the PARITY_TESTS>
    python -m isoform.testing.parity_table --runs /tmp/parity_runs [--out docs]

Rows are aggregated per (model_type, task, backend, dtype): the largest max-abs difference and the
number of comparisons and test cases behind it. `render` builds the markdown from the JSON document
alone, so ``tests/test_parity_table.py`` can check that the two files agree.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

from .parity import encode

#: Max abs difference allowed against transformers' float32 outputs, per isoform dtype (as the tests assert).
TOLERANCES = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 6e-2}
#: The test files whose comparisons fill the table.
PARITY_TESTS = ("tests/test_bert_family.py", "tests/test_vision.py", "tests/test_audio.py", "tests/test_seq2seq.py",
                "tests/test_speech2text.py", "tests/test_decoders.py", "tests/test_half_precision.py",
                "tests/test_minilm.py", "tests/test_seq2seq_cache.py", "tests/test_informative_checkpoints.py",
                "tests/test_funnel_extra.py")
COMMAND = ("rm -rf /tmp/parity_runs && ISOFORM_PARITY_DIR=/tmp/parity_runs CI=true python -m pytest -q -n 2 "
           + " ".join(PARITY_TESTS) + " && python -m isoform.testing.parity_table --runs /tmp/parity_runs")
VERSIONS = ("numpy", "torch", "jax", "tensorflow", "onnxruntime", "transformers")
DTYPES = ("float32", "float16", "bfloat16")

POLICY = """\
## Tolerance policy

Every number is the largest absolute difference, over all outputs of one comparison, between
isoform's outputs and transformers' on the same checkpoint and inputs; a cell is the largest over
every comparison of that architecture, task and backend (config variations, heads, cached decoding
steps, save round trips). The expected outputs are computed by transformers in the test run, never
pasted. A cell above its tolerance is marked **bold ✗**; a blank cell was not tested.

* **float32: 1e-4 max abs, on every architecture, task and backend.** This is the correctness bar,
  with no per-model override: the test checkpoints are *informative* (`isoform.testing.checkpoints`:
  biases and norm weights noised, matrices scaled), so a dropped or misplaced term moves the outputs
  far beyond it (`tests/test_informative_checkpoints.py` checks that each planted breakage moves them
  by more than 10x the tolerance), while two correct float32 implementations differ by rounding only.
  Decoder-only per-token outputs at padded positions are not compared: they are unspecified
  (transformers' SDPA zeroes fully masked rows). The bare `bert` row includes the real
  all-MiniLM-L6-v2 checkpoint (`tests/test_minilm.py`: real weights, hidden size 384, 6 layers), where
  float32 rounding differences are larger than on the tiny test checkpoints.
* **float16: 2e-2; bfloat16: 6e-2** (`tests/test_half_precision.py`: BERT, Llama and BART loaded with
  `dtype="float16"` / `"bfloat16"`, outputs converted to float32 and compared with transformers'
  *float32* outputs, and with transformers run in the same half dtype, within the same tolerance).
  float16: measured <= 4e-3, a 5x margin. bfloat16, whose unit roundoff is 8x float16's: measured up
  to 3.1e-2 against float32, where transformers' own bfloat16 forward is 1.8e-2 away, so 2e-2 would sit
  inside bfloat16's rounding noise. A
  dropped term of these informative checkpoints moves outputs by > 0.1. T5 is not among the
  half-precision architectures: its informative checkpoint is so ill-conditioned (logits ~15, unscaled
  attention) that transformers' own float16 forward is 0.6 and bfloat16 5.4 away from its float32
  forward; BART is the encoder-decoder there.

Other comparisons with transformers, not in these tables:

* ONNX files written by `Model.export_onnx` (`tests/test_onnx_models.py`: 1e-4; decoder-only and
  encoder-decoder files, `tests/test_onnx_decoders.py` and `tests/test_seq2seq_onnx.py`: 1e-4 *beyond
  transformers' own float32 error*, its distance to a float64 copy of the same model, which is ~1e-6 for
  most families but up to ~3e-4 for the ill-conditioned informative T5 checkpoint); `isoform export
  --dtype`: the half-precision tolerances above.
* Generation (`tests/test_generate.py`, `tests/test_seq2seq_generate.py`, `tests/test_speech2text.py`,
  greedy decoding in `tests/test_decoders.py`): token for token identical to transformers' `generate`.
"""


def load_runs(directory: str | Path) -> list[dict[str, Any]]:
    """Every row of the ``*.jsonl`` files in ``directory`` (one per test process)."""
    files = sorted(Path(directory).glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no *.jsonl parity runs in {directory}: run the parity tests with ISOFORM_PARITY_DIR set")
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


def _dtype_rank(dtype: str) -> tuple[int, str]:
    return (DTYPES.index(dtype) if dtype in DTYPES else len(DTYPES), dtype)


def aggregate(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model_type, task, backend, dtype): the largest difference (nan wins), the number of
    comparisons and of distinct test cases; sorted by dtype, model_type, task (bare model first), backend."""
    groups: dict[tuple[str, str | None, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model_type"], r["task"], r["backend"], r["dtype"]), []).append(r)
    out = []
    for (model_type, task, backend, dtype), group in groups.items():
        diffs = [float(r["max_abs_diff"]) for r in group]
        worst = math.nan if any(math.isnan(d) for d in diffs) else max(diffs)
        out.append({"model_type": model_type, "task": task, "backend": backend, "dtype": dtype,
                    "max_abs_diff": encode(float(f"{worst:.3e}") if math.isfinite(worst) else worst),
                    "comparisons": len(group), "cases": len({r.get("case", "") for r in group})})
    return sorted(out, key=lambda r: (_dtype_rank(r["dtype"]), r["model_type"], r["task"] or "", r["backend"]))


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30,
                              cwd=Path(__file__).resolve().parents[2], check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _version(module: str) -> str | None:
    """The installed version of the distribution providing ``module`` (tensorflow may be tensorflow-cpu)."""
    for dist in [module, *packages_distributions().get(module, [])]:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def metadata() -> dict[str, Any]:
    """Where the table comes from: date, isoform commit, Python and the frameworks' versions, and what was
    registered (architectures, backends) when it was generated."""
    from .. import backends
    from ..architectures import supported

    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"), "isoform_commit": _git_commit(),
            "python": platform.python_version(), "versions": {p: _version(p) for p in VERSIONS},
            "architectures": supported(), "backends": backends.names()}


def build(rows: Iterable[dict[str, Any]], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document: metadata, the tolerances, the aggregated rows."""
    return {"metadata": metadata() if meta is None else meta, "tolerances": dict(TOLERANCES), "rows": aggregate(rows)}


def dumps(doc: dict[str, Any]) -> str:
    """``doc`` as JSON, one aggregated row a line (small diffs when the table is regenerated)."""
    head = json.dumps({k: v for k, v in doc.items() if k != "rows"}, indent=2)
    rows = ",\n".join("    " + json.dumps(r) for r in doc["rows"])
    return head[:-2] + ',\n  "rows": [\n' + rows + "\n  ]\n}\n"


def _cell(value: float | str, tolerance: float | None) -> str:
    value = float(value)
    text = f"{value:.1e}" if math.isfinite(value) else str(value)
    return f"**{text}** ✗" if tolerance is not None and not value <= tolerance else text


def render(doc: dict[str, Any]) -> str:
    """The markdown page for ``doc`` (a `build` document): header, tolerance policy, one table per dtype."""
    meta, rows = doc["metadata"], doc["rows"]
    tolerances = doc["tolerances"]
    columns = list(meta["backends"]) + sorted({r["backend"] for r in rows} - set(meta["backends"]))
    versions = ", ".join(f"{p} {v}" for p, v in meta["versions"].items() if v is not None)
    lines = [
        "# Parity with transformers",
        "",
        "Generated by `python -m isoform.testing.parity_table` from a run of the parity tests "
        "(rows recorded by `isoform.testing.parity`); do not edit: regenerate it, and `docs/parity.json` with it:",
        "",
        "```sh",
        COMMAND,
        "```",
        "",
        f"Run of {meta['date']} at isoform commit `{meta['isoform_commit']}`, Python {meta['python']}, {versions}.",
        "",
        POLICY,
    ]
    for dtype in sorted({r["dtype"] for r in rows}, key=_dtype_rank):
        tol = tolerances.get(dtype)
        table: dict[tuple[str, str | None], dict[str, dict[str, Any]]] = {}
        for r in rows:
            if r["dtype"] == dtype:
                table.setdefault((r["model_type"], r["task"]), {})[r["backend"]] = r
        lines += [f"## {dtype}" + (f" (tolerance {tol:.0e})" if tol is not None else ""), "",
                  "| model_type | task | " + " | ".join(columns) + " | comparisons |",
                  "|---|---|" + "---:|" * len(columns) + "---:|"]
        for (model_type, task), cells in table.items():
            values = [_cell(cells[b]["max_abs_diff"], tol) if b in cells else "" for b in columns]
            count = sum(c["comparisons"] for c in cells.values())
            lines.append(f"| {model_type} | {task or 'base'} | " + " | ".join(values) + f" | {count} |")
        lines.append("")
    untested = sorted(set(meta["architectures"]) - {r["model_type"] for r in rows})
    idle = [b for b in meta["backends"] if b not in {r["backend"] for r in rows}]
    lines += ["## Coverage", "",
              f"{len(rows)} cells over {len({r['model_type'] for r in rows})} of the {len(meta['architectures'])} "
              f"registered architectures and {len(columns)} backends.",
              "Registered architectures without a row: " + (", ".join(untested) or "none") + ".",
              "Registered backends without a row: " + (", ".join(idle) or "none") + ".", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m isoform.testing.parity_table", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="directory of the *.jsonl files the tests wrote (ISOFORM_PARITY_DIR)")
    parser.add_argument("--out", default="docs", help="where to write parity.json and parity.md (default: docs)")
    args = parser.parse_args(argv)
    try:
        raw = load_runs(args.runs)
    except (FileNotFoundError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    doc = build(raw)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.json").write_text(dumps(doc), encoding="utf-8")
    (out / "parity.md").write_text(render(doc), encoding="utf-8")
    over = [r for r in doc["rows"] if r["dtype"] in TOLERANCES and not float(r["max_abs_diff"]) <= TOLERANCES[r["dtype"]]]
    print(f"{len(raw)} comparisons -> {len(doc['rows'])} cells in {out / 'parity.json'} and {out / 'parity.md'}"
          + (f"; {len(over)} above tolerance" if over else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
