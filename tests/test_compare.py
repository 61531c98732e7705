"""`isoform.compare`: a wrong lowering planted in a throwaway backend is found and named (node index,
op, IR line, layer), in both passes (layer outputs then bisection, and every node at once); real
backends and dtypes agree within tolerance; `compare_with_transformers` lines layer outputs up with
transformers' hidden states and names the first diverging layer; the CLI prints the report."""

from __future__ import annotations

import numpy as np
import pytest

import isoform
from isoform.backends.numpy_ref import NumpyBackend
from isoform.cli import main
from isoform.comparison import compare, compare_with_transformers, layers

pytest.importorskip("transformers")
pytest.importorskip("torch")

BERT = dict(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=20,
            max_position_embeddings=32)
GPT2 = dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32)


class Planted(NumpyBackend):
    """The NumPy reference with one op's lowering replaced."""

    def __init__(self, op: str, wrong):
        super().__init__()
        self.name = f"planted-{op}"
        self.lowerings[op] = wrong


def first_node(graph, op: str) -> int:
    return next(i for i, n in enumerate(graph.nodes) if n.op == op)


@pytest.mark.parametrize("every_node", [False, True])
@pytest.mark.parametrize(("op", "wrong", "layer"), [
    ("gelu", lambda x, *, approximate: x * 0.5, "encoder.layer.0"),
    ("tanh", lambda x: np.tanh(x) * 1.01, "pooler"),  # only the last block uses it
])
def test_planted_lowering_is_named(hf_checkpoint, op, wrong, layer, every_node):
    path, _ = hf_checkpoint("BertModel", **BERT)
    model = isoform.Model.load(path)
    report = compare(model, ("numpy", Planted(op, wrong)), every_node=every_node)
    graph = model.graph
    assert not report.ok
    assert report.first is not None and report.first.op == op
    assert report.first.index == first_node(graph, op)
    assert report.first.layer == layer
    text = str(report)
    assert f"first diverging node: {report.first.index} ({op}) in {layer}" in text
    assert f"= {op}(" in text  # the node's IR line as the printer shows it
    diverging = [row.layer for row in report.layers if row.difference.diverges]
    assert diverging[0] == layer and "embeddings" not in diverging


def test_small_difference_within_tolerance(hf_checkpoint):
    path, _ = hf_checkpoint("BertModel", **BERT)
    model = isoform.Model.load(path)
    nudged = Planted("gelu", lambda x, *, approximate: isoform.ir.get_op("gelu").reference(x, approximate=approximate) + 1e-7)
    assert compare(model, ("numpy", nudged)).ok
    report = compare(model, ("numpy", nudged), atol=1e-9, rtol=0)
    assert report.first is not None and report.first.op == "gelu"


@pytest.mark.parametrize("other", ["torch", "jax", "tensorflow", "onnxruntime"])
def test_backends_agree(hf_checkpoint, other):
    path, _ = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    model = isoform.Model.load(path, task="causal-lm")
    report = compare(model, ("numpy", other))
    assert report.ok, report
    assert [row.layer for row in report.layers if row.layer.startswith("h.")] == ["h.0", "h.1"]


def test_dtypes_compared(hf_checkpoint):
    path, _ = hf_checkpoint("BertModel", **BERT)
    report = compare(isoform.Model.load(path), ("numpy",), dtypes=("float32", "bfloat16"))
    assert report.runs == ("numpy/float32", "numpy/bfloat16")
    assert report.ok, report
    assert max(row.difference.max_abs for row in report.layers) > 1e-4  # bfloat16 really ran


@pytest.mark.parametrize(("cls", "config", "task"), [("BertModel", BERT, None), ("GPT2LMHeadModel", GPT2, "causal-lm")])
def test_against_transformers(hf_checkpoint, cls, config, task):
    path, _ = hf_checkpoint(cls, **config)
    report = compare_with_transformers(isoform.Model.load(path, task=task), path)
    assert report.ok, report
    assert len(report.layers) == config.get("num_hidden_layers", config.get("n_layer")) + 1
    broken = isoform.Model.load(path, task=task, backend=Planted("layer_norm", lambda x, w=None, b=None, *, eps: x))
    report = compare_with_transformers(broken, path)
    assert report.first is not None and report.first.layer == ("embeddings" if cls == "BertModel" else "h.0")


def test_layers_follow_parameter_blocks(hf_checkpoint):
    path, _ = hf_checkpoint("BertModel", **BERT)
    names = [name for name, _ in layers(isoform.Model.load(path).graph)]
    assert names[:4] == ["embeddings", "encoder.layer.0", "encoder.layer.1", "encoder.layer.2"]


def test_cli(hf_checkpoint, capsys):
    path, _ = hf_checkpoint("BertModel", **BERT)
    assert main(["compare", str(path), "--backends", "numpy", "jax"]) == 0
    out = capsys.readouterr().out
    assert "jax/float32 vs numpy/float32" in out and "encoder.layer.2" in out and "no node diverges" in out
    assert main(["compare", str(path), "--backends", "numpy", "--dtype", "float32", "bfloat16", "--seed", "3"]) == 0
    assert main(["compare", str(path), "--backends", "numpy", "--against", "transformers"]) == 0
    assert "transformers BertModel" in capsys.readouterr().out
    assert main(["compare", str(path), "--backends", "numpy"]) == 2
    assert "both runs are numpy/float32" in capsys.readouterr().err
