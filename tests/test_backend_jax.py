"""The JAX backend beyond op conformance: training through `program.fn` with jax.grad, jit caching
(no retrace on repeated shapes), warmup, half-precision parameters, input errors, integer outputs."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from isoform import backends
from isoform.errors import InputError
from isoform.ir import GraphBuilder, fn

jax = pytest.importorskip("jax")
jnp = jax.numpy


def mlp_graph(dtype: str = "f32"):
    g = GraphBuilder("mlp", dtype=dtype)
    x = g.input("x", ["batch", 8], dtype)
    h = fn.gelu(x @ g.param("fc1.weight", [8, 16]) + g.param("fc1.bias", [16]))
    g.output("y", h @ g.param("fc2.weight", [16, 2]) + g.param("fc2.bias", [2]))
    return g.build()


def mlp_params(dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {"fc1.weight": (8, 16), "fc1.bias": (16,), "fc2.weight": (16, 2), "fc2.bias": (2,)}
    return {k: (rng.standard_normal(s) * 0.5).astype(dtype) for k, s in shapes.items()}


@pytest.fixture
def backend():
    return backends.get("jax")


def test_jax_grad_trains_the_mlp(backend) -> None:
    program = backend.compile(mlp_graph(), mlp_params())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 8)).astype(np.float32)
    target = np.stack([x[:, :4].sum(1), x[:, 4:].mean(1)], axis=1)

    def loss(params):
        return jnp.mean((program.fn(params, {"x": x})["y"] - target) ** 2)

    step = jax.jit(lambda p: jax.tree.map(lambda w, g: w - 0.05 * g, p, jax.grad(loss)(p)))
    params = program.params
    losses = [float(loss(params))]
    for _ in range(30):
        params = step(params)
        losses.append(float(loss(params)))
    assert set(params) == set(program.params)
    assert losses[-1] < 0.5 * losses[0]
    program.params = params  # trained parameters go back into the program
    np.testing.assert_allclose(program.numpy_params()["fc2.bias"], np.asarray(params["fc2.bias"]))
    np.testing.assert_allclose(float(jnp.mean((program(x=x)["y"] - target) ** 2)), losses[-1], rtol=1e-5)


def test_gradient_matches_finite_differences(backend) -> None:
    program = backend.compile(mlp_graph(), mlp_params())
    x = np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)

    def loss(b):
        return jnp.sum(program.fn({**program.params, "fc2.bias": b}, {"x": x})["y"] ** 2)

    b = program.params["fc2.bias"]
    grad = jax.grad(loss)(b)
    eps = jnp.array([1e-2, 0.0], jnp.float32)
    numeric = (loss(b + eps) - loss(b - eps)) / 2e-2
    np.testing.assert_allclose(float(grad[0]), float(numeric), rtol=1e-3)


def test_same_shapes_do_not_retrace(backend) -> None:
    program = backend.compile(mlp_graph(), mlp_params())
    x = np.ones((3, 8), np.float32)
    first = program(x=x)["y"]
    program(x=x)
    program(x=jnp.asarray(x))  # a jax array of the same shape hits the same cache entry
    assert program.compile_count == 1
    assert isinstance(first, jax.Array)
    program(x=np.ones((5, 8), np.float32))  # a new batch size traces once more
    program(x=np.ones((5, 8), np.float32))
    assert program.compile_count == 2


def test_warmup_compiles_ahead(backend) -> None:
    program = backend.compile(mlp_graph(), mlp_params())
    seconds = program.warmup(x=jax.ShapeDtypeStruct((2, 8), np.float32))
    assert seconds > 0 and program.compile_count == 1
    program.warmup(x=np.zeros((4, 8), np.float32))
    assert program.compile_count == 2
    program(x=np.ones((2, 8), np.float32))
    program(x=np.ones((4, 8), np.float32))
    assert program.compile_count == 2


@pytest.mark.parametrize("dtype, np_dtype, atol", [("f16", np.float16, 1e-2), ("bf16", ml_dtypes.bfloat16, 5e-2)])
def test_half_precision_params(backend, dtype: str, np_dtype, atol: float) -> None:
    graph, params = mlp_graph(dtype), mlp_params(np_dtype)
    program = backend.compile(graph, params)
    assert all(p.dtype == np_dtype for p in program.params.values())
    x = np.random.default_rng(3).standard_normal((3, 8)).astype(np_dtype)
    got = program(x=x)["y"]
    assert got.dtype == np_dtype
    want = backends.get("numpy").compile(graph, params)(x=x)["y"]
    np.testing.assert_allclose(backend.to_numpy(got).astype(np.float32), want.astype(np.float32), atol=atol, rtol=atol)
    assert program.numpy_params()["fc1.weight"].dtype == np_dtype


def test_bad_inputs_raise_input_error(backend) -> None:
    program = backend.compile(mlp_graph(), mlp_params())
    with pytest.raises(InputError, match="dim 1 must be 8"):
        program(x=np.ones((2, 7), np.float32))
    with pytest.raises(InputError, match="rank 2"):
        program(x=np.ones((8,), np.float32))
    with pytest.raises(InputError, match="missing"):
        program()
    with pytest.raises(InputError, match="f32"):
        program(x=np.ones((2, 8), bool))
    assert program.compile_count == 0


def test_i64_values_are_int32_and_inputs_are_cast(backend) -> None:
    g = GraphBuilder("lookup")
    ids = g.input("ids", ["batch", "seq"], "i64")
    emb = fn.gather(g.param("emb", [10, 3]), ids)
    g.output("emb", emb)
    g.output("best", fn.argmax(emb, axis=-1))
    table = np.random.default_rng(4).standard_normal((10, 3)).astype(np.float32)
    program = backend.compile(g.build(), {"emb": table})
    ids_np = np.array([[1, 9, -1], [0, 4, 5]], np.int64)
    out = program(ids=ids_np)
    assert out["best"].dtype == np.int32  # i64 outputs are int32 with jax_enable_x64 off (the default)
    np.testing.assert_array_equal(np.asarray(out["emb"]), table[ids_np])
    np.testing.assert_array_equal(np.asarray(out["best"]), table[ids_np].argmax(-1))
    np.testing.assert_array_equal(np.asarray(program(ids=ids_np.tolist())["best"]), np.asarray(out["best"]))


def test_composites_lower_natively(backend) -> None:
    g = GraphBuilder("block")
    q = g.input("q", ["batch", 2, "seq", 4], "f32")
    mask = g.input("mask", ["batch", 1, 1, "seq"], "bool")
    y = fn.attention(q, q, q, mask, causal=True)
    g.output("y", fn.layer_norm(fn.gelu(y), eps=1e-5))
    prepared = backend.prepare(g.build())
    assert [n.op for n in prepared.nodes] == ["attention", "gelu", "layer_norm"]
