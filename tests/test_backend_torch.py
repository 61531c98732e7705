"""Torch-specific behaviour of the torch backend: nn.Module layout, training, dtypes, native inputs,
device/dtype moves, gradients through the lowerings, and errors. Op semantics are covered by the
conformance suite (tests/test_conformance.py)."""

from __future__ import annotations

import copy

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from isoform import backends  # noqa: E402
from isoform.errors import BackendError, InputError  # noqa: E402
from isoform.ir import GraphBuilder, fn  # noqa: E402

TB = backends.get("torch")
NP = backends.get("numpy")


def mlp_graph(dtype: str = "f32"):
    """x [batch, 4] -> linear(16) -> gelu -> linear(1), with an integer buffer and dotted names."""
    g = GraphBuilder("mlp", dtype=dtype)
    x = g.input("x", ["batch", 4], dtype)
    h = fn.gelu(x @ g.param("encoder.layer.0.fc1.weight", [4, 16]) + g.param("encoder.layer.0.fc1.bias", [16]))
    scale = fn.gather(g.param("encoder.table", [3], dtype), g.param("encoder.index", [1], "i64"), axis=0)
    g.output("y", (h @ g.param("head.weight", [16, 1]) + g.param("head.bias", [1])) * scale)
    return g.build()


def mlp_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"encoder.layer.0.fc1.weight": rng.normal(size=(4, 16)).astype(np.float32) * 0.5,
            "encoder.layer.0.fc1.bias": np.zeros(16, np.float32),
            "encoder.table": np.array([0.5, 1.0, 2.0], np.float32), "encoder.index": np.array([1]),
            "head.weight": rng.normal(size=(16, 1)).astype(np.float32) * 0.5, "head.bias": np.zeros(1, np.float32)}


def test_module_layout_and_state_dict():
    program = TB.compile(mlp_graph(), mlp_params())
    module = program.module
    assert program.params is module and isinstance(module, torch.nn.Module)
    names = dict(module.named_parameters())
    assert set(names) == {"encoder.layer.0.fc1.weight", "encoder.layer.0.fc1.bias", "encoder.table",
                          "head.weight", "head.bias"}
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in names.values())
    assert dict(module.named_buffers())["encoder.index"].dtype == torch.int64  # integer params are buffers
    assert set(module.state_dict()) == set(mlp_params())
    assert module.get_submodule("encoder.layer.0.fc1").weight is names["encoder.layer.0.fc1.weight"]
    np.testing.assert_array_equal(program.numpy_params()["head.weight"], mlp_params()["head.weight"])


def test_matches_numpy_reference_and_accepts_native_inputs():
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    want = NP.compile(mlp_graph(), mlp_params())(x=x)["y"]
    program = TB.compile(mlp_graph(), mlp_params())
    for given in (x, torch.from_numpy(x), torch.from_numpy(x).double(), x.tolist()):
        out = program(x=given)["y"]
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_allclose(TB.to_numpy(out), want, atol=1e-5, rtol=1e-5)
    assert program(x=x)["y"].is_inference() and not program.module(x=x)["y"].is_inference()


def test_training_with_torch_optim_reduces_the_loss():
    """The gradients requirement: an IR graph trains with torch.optim through module(...)."""
    program = TB.compile(mlp_graph(), mlp_params())
    module = program.module
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(32, 4)).astype(np.float32))
    target = torch.sin(x.sum(-1, keepdim=True))
    opt = torch.optim.SGD(module.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(module(x=x)["y"], target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert module.encoder.table.grad is not None
    # the program sees the trained values (the module is the one source of truth)
    np.testing.assert_allclose(program.numpy_params()["head.weight"], module.head.weight.detach().numpy())
    with torch.no_grad():
        np.testing.assert_allclose(program(x=x)["y"].numpy(), module(x=x)["y"].numpy())


def test_program_can_record_autograd_when_asked():
    program = TB.compile(mlp_graph(), mlp_params())
    program.inference_mode = False
    program(x=np.ones((2, 4), np.float32))["y"].sum().backward()
    assert program.module.head.weight.grad is not None


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_precision_params(dtype):
    npdt = {"f16": np.float16, "bf16": ml_dtypes.bfloat16}[dtype]
    params = {k: v.astype(npdt) if v.dtype.kind == "f" else v for k, v in mlp_params().items()}
    x = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    program = TB.compile(mlp_graph(dtype), params)
    assert program.module.head.weight.dtype == {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    out = program(x=x)["y"]  # f32 numpy input is cast to the declared dtype
    assert out.dtype == program.module.head.weight.dtype
    got = TB.to_numpy(out)
    assert got.dtype == np.dtype(npdt)
    want = NP.compile(mlp_graph(dtype), params)(x=x.astype(npdt))["y"]
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=5e-2, rtol=5e-2)
    assert program.numpy_params()["head.weight"].dtype == np.dtype(npdt)


def test_dtype_and_device_moves_follow_the_module():
    x = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
    program = TB.compile(mlp_graph(), mlp_params())
    want = program(x=x)["y"].numpy()
    program.module.to(torch.float64)
    assert program(x=x)["y"].dtype == torch.float64
    program.module.half()
    half = program(x=x)["y"]
    assert half.dtype == torch.float16
    np.testing.assert_allclose(half.float().numpy(), want, atol=2e-2, rtol=2e-2)
    program.module.to("cpu", torch.float32)  # weights keep their f16 rounding
    np.testing.assert_allclose(program(x=x)["y"].numpy(), want, atol=5e-3)


def test_parameter_swaps_are_seen():
    program = TB.compile(mlp_graph(), mlp_params())
    module, x = program.module, torch.ones(2, 4)
    zero = {"head.weight": torch.zeros(16, 1), "head.bias": torch.full((1,), 3.0)}
    out = torch.func.functional_call(module, zero, kwargs={"x": x})["y"]
    np.testing.assert_allclose(out.detach().numpy(), 3.0)  # (0 + 3) * table[index] = 3 * 1
    twin = copy.deepcopy(module)
    module.load_state_dict({**module.state_dict(), **zero}, assign=True)
    np.testing.assert_allclose(program(x=x)["y"].numpy(), 3.0)
    assert not np.allclose(twin(x=x)["y"].detach().numpy(), 3.0)  # a deep copy owns its parameters


def test_gradients_flow_through_attention_and_cache_writes():
    g = GraphBuilder("attn")
    q = g.input("q", [1, 4, "seq", 8], "f32")
    mask = g.input("mask", [1, 1, 1, "seq"], "bool")
    pos = g.input("pos", [], "i64")
    kv = g.param("kv", [1, 2, 3, 8])
    zero = g.constant(0, "i64")
    cache = fn.dynamic_update_slice(fn.broadcast_to(g.constant(0.0, "f32"), shape=[1, 2, 6, 8]), kv, zero, zero, pos, zero)
    g.output("out", fn.attention(q, cache, cache, mask, causal=True))
    graph = g.build()
    rng = np.random.default_rng(5)
    params = {"kv": rng.normal(size=(1, 2, 3, 8)).astype(np.float32)}
    inputs = {"q": rng.normal(size=(1, 4, 6, 8)).astype(np.float32), "mask": np.array([[[[1, 1, 1, 1, 1, 0]]]], bool),
              "pos": np.array(2)}
    want = NP.compile(graph, params)(**inputs)["out"]
    module = TB.compile(graph, params).module
    out = module(**inputs)["out"]
    np.testing.assert_allclose(out.detach().numpy(), want, atol=1e-5)
    out.sum().backward()
    assert module.kv.grad is not None and module.kv.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", ["f32", "bf16", "i32"])
def test_top_k_ties_follow_the_reference(dtype):
    g = GraphBuilder("topk")
    x = g.input("x", ["batch", 40], dtype)
    values, idx = fn.top_k(x, k=7)
    g.output("values", values)
    g.output("idx", idx)
    graph = g.build()
    rng = np.random.default_rng(6)
    npdt = {"f32": np.float32, "bf16": ml_dtypes.bfloat16, "i32": np.int32}[dtype]
    for x in (rng.integers(-2, 2, size=(8, 40)), rng.normal(size=(8, 40)) * 100, np.zeros((2, 40))):
        x = x.astype(npdt)
        want, got = NP.compile(graph, {})(x=x), TB.compile(graph, {})(x=x)
        np.testing.assert_array_equal(got["idx"].numpy(), want["idx"])
        np.testing.assert_array_equal(TB.to_numpy(got["values"]), want["values"])


def test_bad_inputs_raise_before_any_compute():
    program = TB.compile(mlp_graph(), mlp_params())

    def boom(*_):
        raise AssertionError("ran the graph")

    program.module._run = boom
    with pytest.raises(InputError, match=r"'x' dim 1 must be 4"):
        program(x=np.ones((2, 5), np.float32))
    with pytest.raises(InputError, match="rank"):
        program(x=torch.ones(2, 4, 1))
    with pytest.raises(InputError, match="float"):
        program(x=torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(InputError, match="missing"):
        program(y=np.ones((2, 4), np.float32))
    with pytest.raises(InputError, match="unexpected"):
        program(x=np.ones((2, 4), np.float32), z=1)


def test_compile_errors_name_the_parameter():
    params = mlp_params()
    with pytest.raises(BackendError, match=r"head\.bias"):
        TB.compile(mlp_graph(), {k: v for k, v in params.items() if k != "head.bias"})
    with pytest.raises(BackendError, match=r"head.weight: \(1, 16\)"):
        TB.compile(mlp_graph(), {**params, "head.weight": np.zeros((1, 16), np.float32)})
    g = GraphBuilder("clash")
    g.output("y", g.input("x", [2], "f32") * g.param("training", [2]))
    with pytest.raises(BackendError, match="training"):
        TB.compile(g.build(), {"training": np.ones(2, np.float32)})


def test_torch_params_are_shared_and_numpy_params_copied():
    weight = torch.zeros(16, 1)
    params = {**mlp_params(), "head.weight": weight}
    program = TB.compile(mlp_graph(), params)
    assert program.module.head.weight.data_ptr() == weight.data_ptr()
    with torch.no_grad():
        program.module.encoder.table.add_(1.0)
    assert params["encoder.table"][0] == 0.5
