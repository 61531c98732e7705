"""The IR: building, validation errors, printing, JSON round-trip, symbolic dims, decomposition."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from isoform import backends
from isoform.backends.numpy_ref import NumpyBackend
from isoform.errors import BackendError, GraphError, InputError
from isoform.ir import Graph, GraphBuilder, decompose, dims, fn


def block() -> Graph:
    """A small transformer block touching most attribute kinds."""
    g = GraphBuilder("block", metadata={"architecture": "test"})
    x = g.input("x", ["batch", "seq", 8], "f32")
    mask = g.input("mask", ["batch", "seq"], "bool")
    w = g.param("attn.qkv.weight", [8, 24])
    h = fn.layer_norm(x, g.param("ln.weight", [8]), g.param("ln.bias", [8]), eps=1e-12)
    qkv = (h @ w).reshape("batch", "seq", 3, 2, 4).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    a = fn.attention(q, k, v, mask.reshape("batch", 1, 1, "seq"), causal=True)
    y = x + fn.gelu(a.transpose(0, 2, 1, 3).reshape("batch", "seq", 8), approximate="tanh")
    g.output("hidden", y)
    g.output("cls", y[:, 0])
    g.output("pad", fn.pad(fn.where(mask, g.constant(float("-inf"), "f32"), g.constant(0.0, "f32")),
                           pads=[[0, 0], [1, 0]], value=-1.5))
    return g.build()


def test_print_is_readable_code() -> None:
    text = str(block())
    assert text.startswith("graph block(%x: f32[batch,seq,8], %mask: bool[batch,seq]) {")
    assert "  param p:attn.qkv.weight: f32[8,24]" in text
    assert "= matmul(%" in text and "p:attn.qkv.weight) : f32[batch,seq,24]" in text
    assert "attention(" in text and "causal=True) : f32[batch,2,seq,4]" in text
    assert "return {hidden: %" in text


def test_json_round_trips_exactly() -> None:
    g = block()
    text = g.to_json()
    again = Graph.from_json(text)
    assert again == g and again.to_json() == text and str(again) == str(g)
    assert json.loads(text)["metadata"] == {"architecture": "test"}
    assert '"-inf"' in text  # non-finite floats stay plain JSON


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "not json{", "not valid JSON"),
    (lambda d: {**d, "format": "onnx"}, "not an isoform graph"),
    (lambda d: {**d, "version": 99}, "unsupported graph version"),
    (lambda d: {k: v for k, v in d.items() if k != "nodes"}, "has no 'nodes'"),
    (lambda d: _node(d, 0, op="frobnicate"), "unknown op 'frobnicate'"),
    (lambda d: _node(d, 0, attrs={"bogus": 1}), "has no attribute ['bogus']"),
    (lambda d: _node(d, 0, inputs=["nowhere"]), "'nowhere' is not defined"),
    (lambda d: _node(d, 0, outputs=[{"name": "0", "shape": [3], "dtype": "f32"}]), "recorded as f32[3]"),
    (lambda d: {**d, "outputs": {"hidden": "missing"}}, "undefined value 'missing'"),
    (lambda d: {**d, "inputs": [{"name": "x", "shape": ["batch"], "dtype": "f128"}]}, "unknown dtype"),
    (lambda d: {**d, "nodes": "oops"}, "nodes must be a list"),
])
def test_corrupt_json_gives_clear_errors(mutate, message) -> None:
    data = block().to_dict()
    broken = mutate(data)
    with pytest.raises(GraphError, match=_re(message)):
        Graph.from_json(broken if isinstance(broken, str) else json.dumps(broken))


def _node(d: dict, i: int, **changes) -> dict:
    d = json.loads(json.dumps(d))
    d["nodes"][i].update(changes)
    return d


def _re(s: str) -> str:
    import re

    return re.escape(s)


def test_build_errors_name_the_node_and_op() -> None:
    g = GraphBuilder("bad")
    x = g.input("x", ["batch", 8], "f32")
    with pytest.raises(GraphError, match=r"node 0 \(matmul\): matmul: contracting dims differ"):
        x @ g.param("w", [4, 2])
    with pytest.raises(GraphError, match="unknown op 'conv3000'"):
        g.add("conv3000", x)
    with pytest.raises(GraphError, match=r"softmax has no attribute \['dim'\]"):
        fn.softmax(x, dim=1)
    with pytest.raises(GraphError, match=r"gelu attribute approximate='fast' is not one of"):
        fn.gelu(x, approximate="fast")
    with pytest.raises(GraphError, match="transpose attribute perm"):
        x.transpose("a", "b")
    with pytest.raises(GraphError, match="inputs must share one dtype, got f16, f32"):
        x + g.input("y", ["batch", 8], "f16")
    with pytest.raises(GraphError, match="do not broadcast"):
        x + g.input("z", [3, 7], "f32")
    with pytest.raises(GraphError, match="cannot infer -1"):
        x.reshape(3, -1)
    with pytest.raises(GraphError, match="not a dim of any graph input"):
        g.output("bad", g.add("iota", shape=["nope", 2]))
        g.build()


def test_symbolic_dims_are_canonical() -> None:
    assert dims.canonical("seq*batch") == dims.mul("batch", "seq") == "batch*seq"
    assert dims.div_exact("768*batch*seq", "batch*seq") == 768
    assert dims.add("seq", 2) == "seq+2" and dims.sub("seq+4", "seq") == 4
    assert dims.evaluate("batch*seq+2", {"batch": 3, "seq": 4}) == 14
    assert dims.broadcast("seq", 1) == "seq" and dims.broadcast("a", "b") is None
    with pytest.raises(GraphError):
        dims.canonical("seq**2")


def test_indexing_matches_numpy() -> None:
    g = GraphBuilder("index")
    x = g.input("x", [2, 5, 6], "f32")
    for name, t in {"a": x[:, 0], "b": x[..., 1:4], "c": x[None, -1, ::2], "d": x[1, :, -1]}.items():
        g.output(name, t)
    graph = g.build()
    xv = np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32)
    out = backends.get("numpy").compile(graph, {})(x=xv)
    for name, want in {"a": xv[:, 0], "b": xv[..., 1:4], "c": xv[None, -1, ::2], "d": xv[1, :, -1]}.items():
        np.testing.assert_array_equal(out[name], want)


def test_decomposition_preserves_meaning() -> None:
    g = block()
    flat = decompose(g, lambda op: False)
    assert {n.op for n in flat.nodes}.isdisjoint({"attention", "layer_norm", "gelu", "softmax"})
    rng = np.random.default_rng(1)
    params = {p.name: rng.normal(size=p.shape).astype(np.float32) for p in g.params}
    inputs = {"x": rng.normal(size=(2, 5, 8)).astype(np.float32), "mask": rng.random((2, 5)) < 0.7}
    a = backends.get("numpy").compile(g, params)(**inputs)
    b = backends.get("numpy").compile(flat, params)(**inputs)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5)


def test_inputs_are_checked_before_compute() -> None:
    program = backends.get("numpy").compile(block(), {p.name: np.zeros(p.shape, np.float32) for p in block().params})
    x = np.zeros((2, 5, 8), np.float32)
    with pytest.raises(InputError, match="dim 'seq' is 5"):
        program(x=x, mask=np.ones((2, 6), bool))
    with pytest.raises(InputError, match="missing \\['mask'\\]"):
        program(x=x)
    with pytest.raises(InputError, match="must be bool"):
        program(x=x, mask=np.ones((2, 5), np.float32))
    with pytest.raises(InputError, match="dim 2 must be 8"):
        program(x=np.zeros((2, 5, 7), np.float32), mask=np.ones((2, 5), bool))


def test_backend_errors() -> None:
    with pytest.raises(BackendError, match="unknown backend 'cuda-magic'; registered backends: numpy"):
        backends.get("cuda-magic")
    limited = NumpyBackend()
    limited.name = "limited"
    del limited.lowerings["erf"], limited.lowerings["gelu"]
    with pytest.raises(BackendError, match=r"backend 'limited' has no lowering for op\(s\) \['erf'\].*node"):
        limited.compile(_gelu_graph(), {})


def _gelu_graph() -> Graph:
    g = GraphBuilder("gelu")
    g.output("y", fn.gelu(g.input("x", [3], "f32")))
    return g.build()


def test_missing_framework_is_reported_with_the_fix(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a))
    backends._loaded.pop("jax", None)
    assert "jax" not in backends.available()
    assert "pip install 'isoform[jax]'" in backends.unavailable()["jax"]
    with pytest.raises(BackendError, match=r"needs jax, which is not installed: pip install 'isoform\[jax\]'"):
        backends.get("jax")


def test_importing_isoform_imports_no_framework() -> None:
    import subprocess
    import sys

    code = ("import sys, isoform, isoform.ir, isoform.backends, isoform.testing.conformance; "
            "isoform.backends.available(); "
            "print([m for m in ('torch', 'jax', 'tensorflow', 'onnxruntime') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
