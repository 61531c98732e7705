"""The committed parity table (docs/parity.json, docs/parity.md) is complete and consistent: a row for
every registered architecture and backend (so a new one fails here until the table is regenerated:
see `isoform.testing.parity_table`), every float32 cell within 1e-4, the markdown exactly what the
generator renders from the JSON, the tolerances those the tests assert; plus the recording and merging."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from isoform import backends
from isoform.architectures import REGISTRY, supported
from isoform.testing import parity, parity_table

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads((DOCS / "parity.json").read_text(encoding="utf-8"))


def test_every_registered_architecture_has_a_row(doc):
    assert sorted(set(supported()) - {r["model_type"] for r in doc["rows"]}) == [], (
        f"regenerate the parity table: {parity_table.COMMAND}")


def test_every_registered_backend_has_a_row(doc):
    assert [b for b in backends.names() if b not in {r["backend"] for r in doc["rows"]}] == [], (
        f"regenerate the parity table: {parity_table.COMMAND}")


def test_every_declared_task_has_a_float32_cell_on_every_backend(doc):
    """A new head of a known architecture also needs the table regenerated."""
    cells = {(r["model_type"], r["task"], r["backend"]) for r in doc["rows"] if r["dtype"] == "float32"}
    missing = [(t, task, b) for t, arch in sorted(REGISTRY.items()) for task in arch.tasks for b in backends.names()
               if (t, task, b) not in cells]
    assert missing == [], f"regenerate the parity table: {parity_table.COMMAND}"


def test_float32_cells_are_within_the_tolerance(doc):
    over = [r for r in doc["rows"] if r["dtype"] == "float32" and not float(r["max_abs_diff"]) <= 1e-4]
    assert over == []


def test_markdown_is_rendered_from_the_json(doc):
    assert (DOCS / "parity.md").read_text(encoding="utf-8") == parity_table.render(doc), (
        "docs/parity.md differs from what docs/parity.json renders: regenerate both with python -m "
        "isoform.testing.parity_table")
    assert doc["tolerances"] == parity_table.TOLERANCES


def test_tolerances_are_those_the_tests_assert():
    import test_audio
    import test_bert_family
    import test_decoders
    import test_seq2seq
    import test_speech2text
    import test_vision

    for module in (test_bert_family, test_vision, test_audio, test_seq2seq, test_speech2text, test_decoders):
        assert (module.__name__, module.TOL) == (module.__name__, parity_table.TOLERANCES["float32"])
    pytest.importorskip("ml_dtypes")
    import test_half_precision

    half = {k: v for k, v in parity_table.TOLERANCES.items() if k != "float32"}
    assert half == test_half_precision.TOL


class FakeModel:
    class arch:
        model_type = "bert"

    class backend:
        name = "jax"

    task = "masked-lm"
    dtype = "float32"


def test_rows_are_recorded_written_and_merged(tmp_path, monkeypatch):
    monkeypatch.setattr(parity, "_ROWS", [])  # this process's own rows stay untouched
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    assert parity.write(tmp_path / "none") is None and not (tmp_path / "none").exists()
    assert parity.record_model(FakeModel(), 3e-6) == 3e-6
    parity.record_model(FakeModel(), 2e-4, case="other")
    parity.record_model(FakeModel(), 1e-3, dtype="float16")
    parity.record("clip", None, "numpy", "float32", math.inf, case="broken")
    assert parity.rows()[0]["case"] == "tests/test_parity_table.py::test_rows_are_recorded_written_and_merged"
    path = parity.write(tmp_path / "runs")
    assert path.name.startswith("gw7-") and path.suffix == ".jsonl"
    rows = parity_table.aggregate(parity_table.load_runs(tmp_path / "runs"))
    assert [(r["model_type"], r["dtype"], r["max_abs_diff"], r["comparisons"], r["cases"]) for r in rows] == [
        ("bert", "float32", 2e-4, 2, 2), ("clip", "float32", "inf", 1, 1), ("bert", "float16", 1e-3, 1, 1)]
    meta = dict(date="2025-01-01", isoform_commit="abc1234", python="3.11.0", versions={"numpy": "2.0"},
                architectures=["bert", "clip", "vit"], backends=["numpy", "jax"])
    doc = parity_table.build(parity_table.load_runs(tmp_path / "runs"), meta)
    assert json.loads(parity_table.dumps(doc)) == doc
    page = parity_table.render(doc)
    assert "| bert | masked-lm |  | **2.0e-04** ✗ | 2 |" in page  # float32 above 1e-4: marked
    assert "| clip | base | **inf** ✗ |  | 1 |" in page
    assert "| bert | masked-lm |  | 1.0e-03 | 1 |" in page  # float16 within 2e-2
    assert "without a row: vit." in page and "Registered backends without a row: none." in page


def test_no_runs_is_an_error(tmp_path, capsys):
    assert parity_table.main(["--runs", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no *.jsonl parity runs" in capsys.readouterr().err
