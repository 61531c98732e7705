"""Every BERT-family architecture and head (the cases of test_bert_family.py, so new ones are picked up)
exported with `Model.export_onnx`, checked by the full ONNX checker, and run in a plain ONNX Runtime
session at two different shapes against transformers; plus the `isoform export` command."""

from __future__ import annotations

import numpy as np
import pytest

import isoform
from isoform.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from test_bert_family import CASES, TINY, TOL, config_for, hf_class, make_inputs, max_diff, reference  # noqa: E402


def feeds(session: ort.InferenceSession, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs by the session's input names; the optional ones transformers defaults get their defaults."""
    ids = inputs["input_ids"]
    defaults = {"attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {i.name: inputs.get(i.name, defaults.get(i.name)) for i in session.get_inputs()}


@pytest.mark.parametrize(("family", "cls", "config", "task"), CASES)
def test_exported_model_matches_transformers(hf_checkpoint, tmp_path, family, cls, config, task):
    config = config_for(config, task)
    path, hf = hf_checkpoint(hf_class(cls, task), **config)
    model = isoform.Model.load(path, task=task)
    out = model.export_onnx(tmp_path / "model.onnx")
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["architecture"] == model.arch.model_type and props["task"] == (task or "")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == list(model.graph.outputs)
    first = make_inputs(config, task, seq=11)
    second = {k: v[:1] for k, v in make_inputs(config, task, seed=1, seq=6).items()}  # batch 1, seq 6
    for inputs in (first, second):
        got = dict(zip(names, session.run(None, feeds(session, inputs))))
        assert max_diff(got, reference(hf, inputs)) <= TOL


def test_cli_export(hf_checkpoint, tmp_path, capsys):
    path, hf = hf_checkpoint("BertForMaskedLM", **TINY)
    out = tmp_path / "bert.onnx"
    assert main(["export", str(path), "--task", "masked-lm", "-o", str(out), "--opset", "18"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "logits" in printed and ": ok" in printed
    proto = onnx.load(out)
    assert proto.opset_import[0].version == 18 and "Attention" not in {n.op_type for n in proto.graph.node}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inputs = make_inputs(TINY, "masked-lm")
    assert max_diff(dict(zip(["logits"], session.run(None, feeds(session, inputs)))), reference(hf, inputs)) <= TOL


def test_cli_export_errors(hf_checkpoint, tmp_path, capsys):
    path, _ = hf_checkpoint("BertForMaskedLM", **TINY)
    assert main(["export", str(path), "-o", str(tmp_path / "no" / "m.onnx")]) == 2
    assert "cannot write ONNX model" in capsys.readouterr().err
    assert main(["export", str(path), "-o", str(tmp_path / "m.onnx"), "--opset", "11"]) == 2
    assert "opset 11" in capsys.readouterr().err
    assert main(["export", str(path), "--task", "no-such-task", "-o", str(tmp_path / "m.onnx")]) == 2
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        main(["export"])
