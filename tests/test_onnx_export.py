"""ONNX export of IR graphs and the onnxruntime backend: dynamic shapes, lowering choices by opset,
file writing (checker, metadata, external data), and bad input (unsupported op, unwritable path, old
opset) leaving nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from isoform import backends
from isoform.errors import BackendError, InputError
from isoform.ir import GraphBuilder, fn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from isoform.backends import onnx as export  # noqa: E402

RNG = np.random.default_rng(0)


def encoder_graph(dtype: str = "f32"):
    """A one-layer attention block with every dynamic-shape pattern a transformer uses."""
    g = GraphBuilder("block", dtype=dtype, metadata={"architecture": "toy", "task": "none"})
    x = g.input("x", ["batch", "seq", 8], dtype)
    mask = g.input("mask", ["batch", "seq"], "i64")
    w = g.param("w", [8, 24])
    qkv = (x @ w).reshape("batch", "seq", 3, 2, 4).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    keep = fn.broadcast_to(fn.ne(mask, g.constant(0, "i64")).reshape("batch", 1, 1, "seq"), shape=["batch", 2, "seq", "seq"])
    h = fn.attention(q, k, v, keep, causal=True).transpose(0, 2, 1, 3).reshape("batch*seq", 8)
    pos = g.add("iota", shape=["batch", "seq"], axis=1, dtype="i64")
    table = g.param("pos", [16, 8])
    y = fn.layer_norm(h.reshape("batch", "seq", -1) + fn.gather(table, pos), g.param("ln.w", [8]), g.param("ln.b", [8]))
    g.output("y", y)
    g.output("positions", fn.cumsum(mask, axis=-1))
    return g.build()


def params_for(graph) -> dict[str, np.ndarray]:
    return {p.name: RNG.standard_normal(p.shape).astype(p.dtype.numpy) for p in graph.params}


def inputs_for(batch: int, seq: int, dtype=np.float32) -> dict[str, np.ndarray]:
    mask = np.ones((batch, seq), np.int64)
    mask[-1, seq // 2:] = 0
    return {"x": RNG.standard_normal((batch, seq, 8)).astype(dtype), "mask": mask}


def run_file(path, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


@pytest.mark.parametrize("opset", [18, 23, None])
def test_export_runs_two_shapes_like_the_reference(tmp_path, opset):
    graph, params = encoder_graph(), None
    params = params_for(graph)
    path = export.export_onnx(graph, params, tmp_path / "block.onnx", opset=opset)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    native = opset is None or opset >= 23
    assert ("Attention" in ops) == native and ("LayerNormalization" in ops)
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:2]] == ["batch", "seq"]
    reference = backends.get("numpy").compile(graph, params)
    for batch, seq in [(2, 5), (3, 9)]:
        inputs = inputs_for(batch, seq)
        got, want = run_file(path, inputs), reference(**inputs)
        np.testing.assert_allclose(got["y"], want["y"], atol=1e-5, rtol=1e-5)
        np.testing.assert_array_equal(got["positions"], want["positions"])


def test_reshape_needs_no_shape_arithmetic():
    """Splitting and merging heads exports as Reshape with 0/-1, not Shape/Mul chains."""
    g = GraphBuilder("heads")
    x = g.input("x", ["batch", "seq", 12], "f32")
    g.output("y", x.reshape("batch", "seq", 3, 4).transpose(0, 2, 1, 3).transpose(0, 2, 1, 3).reshape("batch", "seq", -1))
    model = export.to_model(g.build(), {})
    assert {n.op_type for n in model.graph.node} == {"Reshape", "Transpose", "Identity"}


def test_metadata_and_tied_weights(tmp_path):
    g = GraphBuilder("tied", metadata={"architecture": "toy", "task": "masked-lm"})
    ids = g.input("ids", ["batch"], "i64")
    emb = g.param("emb", [5, 3])
    g.output("logits", fn.gather(emb, ids) @ emb.transpose(1, 0))
    path = export.export_onnx(g.build(), {"emb": np.eye(5, 3, dtype=np.float32)}, tmp_path / "m.onnx",
                              metadata={"note": "hi"})
    model = onnx.load(path)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["architecture"] == "toy" and props["task"] == "masked-lm" and props["note"] == "hi"
    assert props["inputs"] == '["ids"]' and props["outputs"] == '["logits"]' and props["isoform_version"]
    assert [i.name for i in model.graph.initializer].count("emb") == 1
    assert model.producer_name == "isoform"


def test_external_data_for_large_models(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "EXTERNAL_DATA_BYTES", 0)
    g = GraphBuilder("mlp")
    g.output("y", fn.gelu(g.input("x", ["batch", 64], "f32") @ g.param("w", [64, 64])))
    w = RNG.standard_normal((64, 64)).astype(np.float32)
    path = export.export_onnx(g.build(), {"w": w}, tmp_path / "big.onnx")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    x = RNG.standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(run_file(path, {"x": x})["y"], backends.get("numpy").compile(g.build(), {"w": w})(x=x)["y"],
                               atol=1e-5)


def test_unsupported_op_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delitem(export.LOWERINGS, "cumsum")
    with pytest.raises(BackendError, match=r"no ONNX lowering for op\(s\) \['cumsum'\]"):
        export.export_onnx(encoder_graph(), params_for(encoder_graph()), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opset", [12, 17, 999])
def test_opset_out_of_range(tmp_path, opset):
    with pytest.raises(BackendError, match=f"opset {opset}"):
        export.export_onnx(encoder_graph(), params_for(encoder_graph()), tmp_path / "m.onnx", opset=opset)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_path(tmp_path):
    with pytest.raises(BackendError, match="cannot write ONNX model"):
        export.export_onnx(encoder_graph(), params_for(encoder_graph()), tmp_path / "missing" / "m.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(BackendError, match="cannot write ONNX model"):
        export.export_onnx(encoder_graph(), params_for(encoder_graph()), tmp_path / "dir.onnx")
    assert [f.name for f in tmp_path.iterdir()] == ["dir.onnx"] and not any((tmp_path / "dir.onnx").iterdir())


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_precision_graphs(dtype):
    graph = encoder_graph(dtype)
    params = params_for(graph)
    inputs = inputs_for(2, 6, graph.inputs[0].dtype.numpy)
    got = backends.get("onnxruntime").compile(graph, params)(**inputs)
    want = backends.get("numpy").compile(graph, params)(**inputs)
    assert got["y"].dtype == want["y"].dtype
    np.testing.assert_allclose(got["y"].astype(np.float32), want["y"].astype(np.float32), atol=0.1, rtol=0.05)


def test_backend_program():
    graph = encoder_graph()
    params = params_for(graph)
    program = backends.get("onnxruntime").compile(graph, params)
    session = program.session
    first = program(**inputs_for(2, 3))
    program(**inputs_for(1, 7))
    assert program.session is session and isinstance(first["y"], np.ndarray)
    assert session.get_session_options().intra_op_num_threads == os.cpu_count()
    assert session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert set(program.numpy_params()) == set(params)
    with pytest.raises(InputError, match="mask"):
        program(x=np.zeros((2, 3, 8), np.float32), mask=np.ones((2, 4), np.int64))
    with pytest.raises(InputError, match="missing"):
        program(x=np.zeros((2, 3, 8), np.float32))


def test_default_opset_is_supported_by_onnxruntime():
    from isoform.backends.onnxruntime import supported_opset

    assert 23 <= supported_opset() <= onnx.defs.onnx_opset_version()
    assert export.default_opset() == supported_opset()


def test_emitted_operators_are_listed():
    """Every operator the conformance graphs export to is in ONNX_OPS (which sets the default opset)."""
    from isoform.testing.cases import all_cases
    from isoform.testing.conformance import build_graph

    seen = set()
    for case in all_cases():
        graph = build_graph(case)
        model = export.to_model(graph, {})
        seen |= {n.op_type for n in model.graph.node}
    assert seen <= set(export.ONNX_OPS), sorted(seen - set(export.ONNX_OPS))


def test_importing_isoform_does_not_import_onnx():
    code = "import sys, isoform, isoform.backends; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("fill", [np.finfo(np.float32).min, -1e30])
def test_attention_float_mask_fully_masked_row_averages(fill):
    """ONNX Runtime's Attention kernel zeroes rows whose scores are all <= the lowest float; the
    lowering clamps masks so such rows average the values, as the reference does."""
    g = GraphBuilder("attn")
    q, m = g.input("q", [1, 2, 4, 4], "f32"), g.input("m", [1, 1, 4, 4], "f32")
    g.output("y", fn.attention(q, q, q, m))
    graph = g.build()
    x = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    mask = np.zeros((1, 1, 4, 4), np.float32)
    mask[0, 0, 1] = fill
    got = backends.get("onnxruntime").compile(graph, {})(q=x, m=mask)["y"]
    np.testing.assert_allclose(got, backends.get("numpy").compile(graph, {})(q=x, m=mask)["y"], atol=1e-6)
    np.testing.assert_allclose(got[0, :, 1], x[0].mean(1), atol=1e-6)
