"""The TensorFlow backend: variables in a tf.Module, one trace for all input sizes, training with
tf.GradientTape, half-precision parameters, input errors. (Op semantics: tests/test_conformance.py.)"""

from __future__ import annotations

import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from isoform import backends  # noqa: E402
from isoform.errors import InputError  # noqa: E402
from isoform.ir import GraphBuilder, fn  # noqa: E402

TF = backends.get("tensorflow")
NP = backends.get("numpy")


def mlp_graph(dtype: str = "f32"):
    """A 2-layer MLP returning predictions and the mean squared error against `target`."""
    g = GraphBuilder("mlp", dtype=dtype)
    x = g.input("x", ["batch", 8], dtype)
    target = g.input("target", ["batch", 2], dtype)
    h = fn.gelu(x @ g.param("fc1.weight", [8, 16]) + g.param("fc1.bias", [16]))
    y = h @ g.param("fc2.weight", [16, 2]) + g.param("fc2.bias", [2])
    g.output("y", y)
    g.output("loss", ((y - target) * (y - target)).mean([0, 1]))
    return g.build()


def mlp_params(dtype=np.float32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"fc1.weight": (8, 16), "fc1.bias": (16,), "fc2.weight": (16, 2), "fc2.bias": (2,)}
    return {k: (rng.standard_normal(s) * 0.5).astype(dtype) for k, s in shapes.items()}


def test_importing_isoform_does_not_import_tensorflow() -> None:
    code = "import sys, isoform, isoform.backends; isoform.backends.available(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parameters_are_named_variables_of_a_module() -> None:
    program = TF.compile(mlp_graph(), mlp_params())
    assert program.params is program.module and isinstance(program.module, tf.Module)
    variables = program.module.variables_by_name
    assert set(variables) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert all(isinstance(v, tf.Variable) and v.trainable for v in variables.values())
    assert variables["fc1.weight"].name == "fc1.weight:0"
    assert {id(v) for v in program.module.trainable_variables} == {id(v) for v in variables.values()}
    native = TF.to_native(np.ones((8, 16), np.float32), mlp_graph().values["fc1.weight"].dtype)
    shared = TF.compile(mlp_graph(), {**mlp_params(), "fc1.weight": native})
    assert shared.module.variables_by_name["fc1.weight"] is native  # native parameters are used as they are


def test_training_with_gradient_tape_lowers_the_loss() -> None:
    program = TF.compile(mlp_graph(), mlp_params())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 8)).astype(np.float32)
    target = np.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5], axis=1).astype(np.float32)
    variables = program.module.trainable_variables
    losses = []
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = program(x=x, target=target)["loss"]
        grads = tape.gradient(loss, variables)
        assert all(g is not None for g in grads)
        for v, g in zip(variables, grads):
            v.assign_sub(0.1 * g)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    trained = program.numpy_params()
    assert not np.allclose(trained["fc1.weight"], mlp_params()["fc1.weight"])
    expected = NP.compile(mlp_graph(), trained)(x=x, target=target)["loss"]
    np.testing.assert_allclose(program(x=x, target=target)["loss"].numpy(), expected, rtol=1e-5)


def test_one_trace_serves_every_input_size() -> None:
    g = GraphBuilder("dyn")
    ids = g.input("ids", ["batch", "seq"], "i64")
    emb = g.param("emb", [10, 4])
    h = fn.gather(emb, ids).reshape("batch*seq", 4)  # dims attributes with symbolic sizes
    pos = g.add("iota", shape=["batch", "seq"], axis=1, dtype="f32").reshape("batch*seq", 1)
    g.output("y", (h + pos).reshape("batch", "seq", 4))
    graph = g.build()
    params = {"emb": np.arange(40, dtype=np.float32).reshape(10, 4)}
    program = TF.compile(graph, params)
    assert program.warmup() >= 0
    for batch, seq in [(1, 3), (2, 7), (5, 1)]:
        ids = np.random.default_rng(seq).integers(0, 10, (batch, seq)).astype(np.int32)  # i32 is cast to i64
        got = program(ids=ids)["y"]
        np.testing.assert_array_equal(got.numpy(), NP.compile(graph, params)(ids=ids)["y"])
    program(ids=tf.constant([[1, 2]], tf.int64))
    assert program.function.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_precision_parameters(dtype: str) -> None:
    np_dtype = {"f16": np.float16, "bf16": ml_dtypes.bfloat16}[dtype]
    graph, params = mlp_graph(dtype), mlp_params(np_dtype)
    program = TF.compile(graph, params)
    assert all(v.dtype == {"f16": tf.float16, "bf16": tf.bfloat16}[dtype] for v in program.module.trainable_variables)
    x = np.random.default_rng(2).standard_normal((4, 8)).astype(np_dtype)
    target = np.zeros((4, 2), np_dtype)
    got = program(x=x, target=target)
    assert got["y"].dtype == program.module.variables_by_name["fc1.weight"].dtype
    assert program.numpy_params()["fc2.bias"].dtype == np_dtype
    expected = NP.compile(graph, params)(x=x, target=target)["y"]
    np.testing.assert_allclose(got["y"].numpy().astype(np.float32), expected.astype(np.float32), atol=0.1, rtol=0.05)


def test_wrong_inputs_raise_input_error() -> None:
    program = TF.compile(mlp_graph(), mlp_params())
    x, target = np.zeros((3, 8), np.float32), np.zeros((3, 2), np.float32)
    with pytest.raises(InputError, match="'x' dim 1 must be 8"):
        program(x=np.zeros((3, 7), np.float32), target=target)
    with pytest.raises(InputError, match="dim 'batch' is 3"):
        program(x=x, target=tf.zeros((4, 2)))
    with pytest.raises(InputError, match="must be f32"):
        program(x=x.astype(np.int64), target=target)
    with pytest.raises(InputError, match="missing"):
        program(x=x)


def test_dynamic_update_slice_is_differentiable() -> None:
    g = GraphBuilder("cache")
    cache = g.input("cache", [2, 6], "f32")
    update = g.input("update", [2, 2], "f32")
    pos = g.input("pos", [], "i32")
    zero = g.constant(0, "i32")
    g.output("y", g.add("dynamic_update_slice", cache, update, zero, pos))
    program = TF.compile(g.build(), {})
    c, u = tf.Variable(tf.zeros((2, 6))), tf.Variable(tf.ones((2, 2)))
    with tf.GradientTape() as tape:
        y = program(cache=c, update=u, pos=np.int32(5))["y"]  # clamped to start 4
        loss = tf.reduce_sum(y * tf.range(6, dtype=tf.float32))
    dc, du = tape.gradient(loss, [c, u])
    np.testing.assert_array_equal(y.numpy()[0], [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(dc.numpy()[0], [0, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(du.numpy()[0], [4, 5])


def conv_stack_graph(dtype: str = "f32", channels: int = 6, positional: bool = True):
    """A wav2vec2-like conv stack: conv, group norm, gelu, a select, a dilated conv, a grouped
    positional conv between transposes; conv values also reach graph outputs and a reduction."""
    g = GraphBuilder("convs", dtype=dtype)
    x = g.input("x", ["batch", 2, "time"], dtype)
    c = channels
    h = fn.conv(x, g.param("c1.weight", [c, 2, 3]), stride=[2], padding=[[1, 0]], dilation=[1], groups=1)
    h = fn.layer_norm(h, eps=1e-5) * g.param("gn.weight", [c]).reshape(1, c, 1) + g.param("gn.bias", [c]).reshape(1, c, 1)
    h = fn.gelu(h)
    h = fn.where(fn.gt(h, 0.1), h, h * 0.5)  # a comparison and a 3-operand op, channels-last
    h = fn.conv(h, g.param("c2.weight", [c, c, 2]), stride=[1], padding=[[0, 0]], dilation=[2], groups=1)
    g.output("scaled", h * 2.0)  # a graph output: NC*
    g.output("total", (h - 1.0).sum([1]))  # a reduction reads NC*
    t = fn.gelu(h).transpose(0, 2, 1)  # [batch, time, c]: the layout undone, free
    if not positional:  # TF has no gradient of a grouped conv on CPU
        g.output("y", t)
        return g.build()
    p = fn.conv(t.transpose(0, 2, 1), g.param("pos.weight", [c, c // 2, 4]), stride=[1], padding=[[2, 1]],
                dilation=[1], groups=2)
    g.output("y", t + fn.gelu(p).transpose(0, 2, 1))
    return g.build()


def conv_stack_params(dtype=np.float32, channels: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    c = channels
    shapes = {"c1.weight": (c, 2, 3), "gn.weight": (c,), "gn.bias": (c,), "c2.weight": (c, c, 2), "pos.weight": (c, c // 2, 4)}
    return {k: (rng.standard_normal(s) * 0.7).astype(dtype) for k, s in shapes.items()}


def test_conv_chains_stay_channels_last() -> None:
    graph, params = conv_stack_graph(), conv_stack_params()
    program = TF.compile(graph, params)
    expected = NP.compile(graph, params)
    for batch, time in [(1, 17), (3, 24)]:
        x = np.random.default_rng(time).standard_normal((batch, 2, time)).astype(np.float32)
        got, want = program(x=x), expected(x=x)
        for k in want:
            np.testing.assert_allclose(got[k].numpy(), want[k], atol=1e-5, rtol=1e-5, err_msg=k)
    assert program.function.experimental_get_tracing_count() == 1
    ops = program.function.get_concrete_function().graph.get_operations()
    moved = [op.inputs[0].op.type for op in ops if op.type == "Transpose" and op.inputs[0].op.type != "ReadVariableOp"]
    # x into the first conv, "scaled" and the reduction's input back to NC*; none around the positional conv
    # (filters aside: OIW -> WIO)
    assert len(moved) == 3, moved


def test_conv_chains_in_half_precision_and_training() -> None:
    graph, params = conv_stack_graph("f16"), conv_stack_params(np.float16)
    program = TF.compile(graph, params)
    x = np.random.default_rng(5).standard_normal((2, 2, 20)).astype(np.float16)
    got, want = program(x=x), NP.compile(graph, params)(x=x)
    for k in want:
        assert got[k].dtype == tf.float16
        np.testing.assert_allclose(got[k].numpy().astype(np.float32), want[k].astype(np.float32), atol=0.05, rtol=0.05)
    program = TF.compile(conv_stack_graph(positional=False), conv_stack_params())
    variables = program.module.trainable_variables
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(program(x=x.astype(np.float32))["y"] ** 2)
    grads = dict(zip([v.name for v in variables], tape.gradient(loss, variables)))
    assert all(np.isfinite(grads[f"{k}:0"].numpy()).all() for k in ("c1.weight", "gn.weight", "gn.bias", "c2.weight"))


TINY_GPT2 = dict(vocab_size=99, n_embd=32, n_layer=1, n_head=4, n_positions=64)


def test_generation_traces_the_decoder_once(hf_checkpoint) -> None:
    """20 greedy tokens (prefill + 19 steps of another shape), then a prompt of another length: the
    decoder's tf.function has one dynamic-shape trace for all of them, never one per token or shape."""
    import isoform

    path, _ = hf_checkpoint("GPT2LMHeadModel", **TINY_GPT2)
    model = isoform.Model.load(path, backend="tensorflow", task="causal-lm")
    ids = np.random.default_rng(0).integers(1, 99, (2, 5))
    assert model.generate(ids, max_new_tokens=20, min_new_tokens=20).shape == (2, 25)
    function = model.decoder().graphs.decoder.function
    assert function.experimental_get_tracing_count() == 1
    assert model.generate(ids[:1, :3], max_new_tokens=20, min_new_tokens=20).shape == (1, 23)
    assert function.experimental_get_tracing_count() == 1


def test_forward_traces_once_for_every_sequence_length(hf_checkpoint) -> None:
    import isoform

    path, _ = hf_checkpoint("GPT2LMHeadModel", **TINY_GPT2)
    model = isoform.Model.load(path, backend="tensorflow")
    assert model.bucket is None  # the dynamic-shape policy: no padding to buckets, the trace takes any length
    for batch, seq in [(1, 4), (3, 17), (2, 40)]:
        ids = np.random.default_rng(seq).integers(1, 99, (batch, seq))
        assert model(input_ids=ids)["last_hidden_state"].shape == (batch, seq, 32)
    assert model.program.function.experimental_get_tracing_count() == 1
