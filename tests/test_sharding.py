"""Scale-out on JAX's sharding engine: the IR's sharding annotations, and tiny Llama (GQA), GPT-2 and
BERT checkpoints loaded onto meshes of 8 fake CPU devices (`XLA_FLAGS`, so in a subprocess that imports
JAX fresh: this file run as a script) against the same model on one device: forward, greedy
`generate`, the parameters' and KV caches' layouts, and loading that never puts a whole sharded
parameter on one device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import isoform
from isoform.errors import BackendError, GraphError
from isoform.ir import Graph, GraphBuilder

MESHES = [(2, 4), (1, 8), (8, 1)]
PAST = ("past_key_values.0.key", "past_key_values.0.value")
NEW_TOKENS = 6
# (transformers class, config, task); sizes chosen so that most dims divide 4 and 8, and a few do not
CASES = {
    "llama": ("LlamaForCausalLM", dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=64),
              "causal-lm"),
    "gpt2": ("GPT2LMHeadModel", dict(vocab_size=99, n_embd=32, n_layer=1, n_head=4, n_positions=64), "causal-lm"),
    "bert": ("BertForMaskedLM", dict(vocab_size=96, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64), "masked-lm"),
}
# parameter -> expected logical layout per dim ("model" or None); a dim whose size the mesh's model
# axis does not divide is replicated
EXPECTED = {
    "llama": {"embed_tokens.weight": ("model", None), "lm_head.weight": ("model", None),
              "layers.0.self_attn.q_proj.weight": (None, "model"), "layers.0.self_attn.k_proj.weight": (None, "model"),
              "layers.0.self_attn.v_proj.weight": (None, "model"), "layers.0.self_attn.o_proj.weight": ("model", None),
              "layers.0.mlp.gate_proj.weight": (None, "model"), "layers.0.mlp.up_proj.weight": (None, "model"),
              "layers.0.mlp.down_proj.weight": ("model", None), "layers.0.input_layernorm.weight": (None,),
              "norm.weight": (None,)},
    "gpt2": {"wte.weight": ("model", None), "wpe.weight": (None, None),
             "h.0.attn.c_attn.weight": (None, "model"), "h.0.attn.c_attn.bias": ("model",),
             "h.0.attn.c_proj.weight": ("model", None), "h.0.attn.c_proj.bias": (None,),
             "h.0.mlp.c_fc.weight": (None, "model"), "h.0.mlp.c_proj.weight": ("model", None), "ln_f.weight": (None,)},
    "bert": {"embeddings.word_embeddings.weight": ("model", None), "embeddings.position_embeddings.weight": (None, None),
             "encoder.layer.0.attention.self.query.weight": (None, "model"),
             "encoder.layer.0.attention.self.query.bias": ("model",),
             "encoder.layer.0.attention.self.value.weight": (None, "model"),
             "encoder.layer.0.attention.output.dense.weight": ("model", None),
             "encoder.layer.0.attention.output.dense.bias": (None,),
             "encoder.layer.0.intermediate.dense.weight": (None, "model"),
             "encoder.layer.0.output.dense.weight": ("model", None),
             "encoder.layer.0.output.LayerNorm.weight": (None,), "cls.predictions.bias": (None,)},
}


def prompt(vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Four rows of 9 ids, rows 1 and 3 left-padded (3 and 5 pads)."""
    ids = np.random.default_rng(7).integers(1, vocab, (4, 9))
    mask = np.ones_like(ids)
    mask[1, :3] = mask[3, :5] = 0
    return ids * mask, mask


# -- the subprocess ---------------------------------------------------------------------------------
def worker(paths: dict[str, str]) -> dict[str, Any]:
    """Runs with 8 fake devices: every case on every mesh against the single-device model."""
    import jax
    from jax.sharding import Mesh

    from isoform.backends import jax as jax_backend

    assert len(jax.devices()) == 8, jax.devices()
    results: dict[str, Any] = {}
    for case, path in paths.items():
        _, config, task = CASES[case]
        ids, mask = prompt(config["vocab_size"])
        single = isoform.Model.load(path, backend="jax", task=task)
        want = single(input_ids=ids, attention_mask=mask).numpy()
        tokens = single.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS) if task == "causal-lm" else None
        grads = _grads(single, ids, mask) if case == "llama" else None
        for shape in MESHES:
            mesh = Mesh(np.array(jax.devices()).reshape(shape), ("data", "model"))
            put, whole = jax_backend.jax.device_put, []
            sharded_shapes = {p.shape for p in single.graph.params if p.sharding is not None}

            def recording(x, device=None, *args, _put=put, _whole=whole, _shapes=sharded_shapes, **kwargs):
                to_one = device is None or isinstance(device, jax.Device) or len(device.device_set) == 1
                from_one = isinstance(x, jax.Array) and len(x.sharding.device_set) == 1
                if (to_one or from_one) and tuple(np.shape(x)) in _shapes:
                    _whole.append(tuple(np.shape(x)))
                return _put(x, device, *args, **kwargs)

            jax_backend.jax.device_put = recording
            try:
                model = isoform.Model.load(path, backend="jax", task=task, mesh=mesh)
            finally:
                jax_backend.jax.device_put = put
            out = model(input_ids=ids, attention_mask=mask)
            r: dict[str, Any] = {
                "forward_diff": max(float(np.abs(np.asarray(v) - want[k]).max()) for k, v in out.items()),
                "whole_on_one_device": whole,
                "params": {name: {"spec": _spec(x.sharding.spec, x.ndim), "shape": list(x.shape),
                                  "shards": sorted({tuple(s.data.shape) for s in x.addressable_shards}),
                                  "devices": len(x.sharding.device_set)}
                           for name, x in model.program.params.items()},
                "input_ids": _spec(model.program.place_inputs({"input_ids": ids})["input_ids"].sharding.spec, 2),
            }
            if tokens is not None:
                r["generate_equal"] = bool(np.array_equal(model.generate(ids, attention_mask=mask,
                                                                         max_new_tokens=NEW_TOKENS), tokens))
                decoder = model.decoder()  # the compiled prefill of generate's shapes, its KV cache kept
                decoder.prefill(ids, mask, max_new_tokens=NEW_TOKENS)
                r["cache"] = {k: _spec(decoder._cache[k].sharding.spec, 4) for k in PAST}
            if grads is not None and shape == MESHES[0]:
                got = _grads(model, ids, mask)
                r["grad_diff"] = max(float(np.abs(np.asarray(got[k]) - np.asarray(g)).max()) for k, g in grads.items())
                r["grad_specs"] = {k: _spec(got[k].sharding.spec, got[k].ndim) for k in EXPECTED[case]}
            results[f"{case}-{shape[0]}x{shape[1]}"] = r
    return results


def _grads(model: Any, ids: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """jax.grad of the summed logits over the model's parameter pytree (as a training step takes it)."""
    import jax

    inputs = {"input_ids": ids, "attention_mask": mask}
    if hasattr(model.program, "place_inputs"):
        inputs = model.program.place_inputs(inputs)
    return jax.grad(lambda p: model.program.fn(p, inputs)["logits"].sum())(model.program.params)


def _spec(spec: Any, rank: int) -> list[str | None]:
    """A PartitionSpec as one mesh axis name (or None) per dim."""
    axes = list(spec) + [None] * (rank - len(spec))
    return [a if a is None or isinstance(a, str) else "+".join(a) for a in axes]


# -- the tests --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sharded(hf_checkpoint) -> dict[str, Any]:
    pytest.importorskip("jax")
    paths = {case: str(hf_checkpoint(cls, **config)[0]) for case, (cls, config, _) in CASES.items()}
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, __file__, json.dumps(paths)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("shape", MESHES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sharded_model_equals_single_device(sharded, case: str, shape: tuple[int, int]) -> None:
    r = sharded[f"{case}-{shape[0]}x{shape[1]}"]
    assert r["forward_diff"] <= 1e-5
    if CASES[case][2] == "causal-lm":
        assert r["generate_equal"]


def test_gradients_keep_the_layout(sharded) -> None:
    """jax.grad over the sharded parameter pytree: the single-device gradients, laid out as the parameters."""
    r = sharded["llama-2x4"]
    assert r["grad_diff"] <= 1e-4
    assert r["grad_specs"] == {name: p["spec"] for name, p in r["params"].items() if name in EXPECTED["llama"]}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("shape", MESHES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_parameters_are_sharded_as_annotated(sharded, case: str, shape: tuple[int, int]) -> None:
    r, (data, model) = sharded[f"{case}-{shape[0]}x{shape[1]}"], shape
    for name, logical in EXPECTED[case].items():
        p = r["params"][name]
        full = p["shape"]
        spec = [a if a and n % model == 0 else None for a, n in zip(logical, full, strict=True)]
        assert p["spec"] == spec, name
        assert p["devices"] == 8, name
        assert p["shards"] == [[n // model if a else n for a, n in zip(spec, full, strict=True)]], name
    split = [n for n, p in r["params"].items() if "model" in p["spec"]]
    assert len(split) >= 6  # all projections and more (over an axis of size 1 on 8x1)
    assert r["whole_on_one_device"] == []  # streamed shard by shard: no sharded parameter ever whole on a device
    assert r["input_ids"] == ["data" if 4 % data == 0 else None, None]


def test_non_dividing_dims_are_replicated(sharded) -> None:
    # GPT-2's vocabulary of 99 divides neither 4 nor 8: its embedding falls back to replicated
    for shape in ("2x4", "1x8"):
        wte = sharded[f"gpt2-{shape}"]["params"]["wte.weight"]
        assert wte["spec"] == [None, None] and wte["shards"] == [[99, 32]]


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_kv_cache_is_sharded_over_heads(sharded, shape: tuple[int, int]) -> None:
    data, model = shape  # (the propagated output layouts name no mesh axis of size 1)
    batch = "data" if data > 1 and 4 % data == 0 else None
    heads = "model" if model > 1 and 4 % model == 0 else None  # Llama: 4 KV heads (GQA); GPT-2: 4 heads
    for case in ("llama", "gpt2"):
        cache = sharded[f"{case}-{shape[0]}x{shape[1]}"]["cache"]
        assert cache == {k: [batch, heads, None, None] for k in PAST}, case


# -- in-process: the IR and the errors --------------------------------------------------------------
def test_shardings_are_recorded_printed_and_round_trip() -> None:
    g = GraphBuilder("tp")
    x = g.input("x", ["batch", 4], "f32", sharding=("data", None))
    w = g.param("w", [4, 8], sharding=(None, "model"))
    assert g.param("w", [4, 8]).name == "w"  # a fetch without sharding keeps it
    g.output("y", x @ w)
    graph = g.build()
    assert graph.values["w"].sharding == (None, "model") and graph.values["x"].sharding == ("data", None)
    assert "param p:w: f32[4,8] sharded[_, model]" in str(graph)
    again = Graph.from_json(graph.to_json())
    assert again == graph and again.values["w"].sharding == (None, "model")


def test_bad_shardings_are_graph_errors() -> None:
    g = GraphBuilder("bad")
    g.param("w", [4, 8], sharding=("model", None))
    with pytest.raises(GraphError, match=r"declared as .* sharded"):
        g.param("w", [4, 8], sharding=(None, "model"))
    for sharding, match in [((None,), "one entry per dim"), (("model", "model"), "distinct"), ((None, "x y"), "distinct")]:
        g = GraphBuilder("bad")
        g.output("y", g.param("w", [4, 8], sharding=sharding) * 2.0)
        with pytest.raises(GraphError, match=match):
            g.build()


def test_mesh_errors(hf_checkpoint) -> None:
    jax = pytest.importorskip("jax")
    from jax.sharding import Mesh

    path, _ = hf_checkpoint(CASES["bert"][0], **CASES["bert"][1])
    devices = np.array(jax.devices()[:1]).reshape(1, 1)
    mesh = Mesh(devices, ("data", "model"))
    with pytest.raises(BackendError, match="needs backend='jax'"):
        isoform.Model.load(path, backend="numpy", mesh=mesh)
    with pytest.raises(BackendError, match="not both"):
        isoform.Model.load(path, backend="jax", mesh=mesh, device="cpu")
    with pytest.raises(BackendError, match="neither 'data' nor 'model'"):
        isoform.Model.load(path, backend="jax", mesh=Mesh(devices, ("dp", "tp")))
    with pytest.raises(BackendError, match=r"unknown mesh axes \['mp'\]"):
        isoform.backends.get("jax").sharded(Mesh(devices, ("dp", "tp")), axis_names={"model": "mp"})
    with pytest.raises(BackendError, match=r"jax\.sharding\.Mesh"):
        isoform.backends.get("jax").sharded(devices)


def test_other_mesh_axis_names(hf_checkpoint) -> None:
    jax = pytest.importorskip("jax")
    from jax.sharding import Mesh

    path, _ = hf_checkpoint(CASES["bert"][0], **CASES["bert"][1])
    be = isoform.backends.get("jax").sharded(Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("dp", "tp")),
                                             axis_names={"data": "dp", "model": "tp"})
    model = isoform.Model.load(path, backend=be, task="masked-lm")
    assert tuple(model.program.params["encoder.layer.0.intermediate.dense.weight"].sharding.spec) == (None, "tp")
    ids, mask = prompt(96)
    want = isoform.Model.load(path, backend="jax", task="masked-lm")(input_ids=ids, attention_mask=mask).numpy()["logits"]
    assert np.abs(model(input_ids=ids, attention_mask=mask).numpy()["logits"] - want).max() <= 1e-5


if __name__ == "__main__":
    print(json.dumps(worker(json.loads(sys.argv[1]))))
