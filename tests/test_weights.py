"""isoform.weights: name maps, strict streaming load, dtype casts and save back to the HF layout,
checked against tiny `transformers` BERT / GPT-2 checkpoints built here."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from isoform.errors import WeightsError
from isoform.weights import (
    Concat,
    Rename,
    Reshape,
    Split,
    Transpose,
    WeightMap,
    load_params,
    open_checkpoint,
    save_params,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

BERT_CFG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                vocab_size=99, max_position_embeddings=64)
L = "encoder.layer.{i}."


def bert_map(save_prefix: bool = False) -> WeightMap:
    """A small example map for BertModel / BertForMaskedLM, in a made-up graph layout."""
    qkv = [L + f"attention.self.{n}" for n in ("query", "key", "value")]
    return WeightMap(
        [
            Rename("embeddings.word_embeddings.weight", "emb.word"),
            Rename("embeddings.position_embeddings.weight", "emb.pos"),
            Rename("embeddings.token_type_embeddings.weight", "emb.type"),
            Rename("embeddings.LayerNorm.weight", "emb.ln.g"),
            Rename("embeddings.LayerNorm.bias", "emb.ln.b"),
            Concat([n + ".weight" for n in qkv], "layer.{i}.qkv.w", axis=0, transform=Transpose()),
            Concat([n + ".bias" for n in qkv], "layer.{i}.qkv.b"),
            Rename(L + "attention.output.dense.weight", "layer.{i}.attn_out.w", Transpose()),
            Rename(L + "attention.output.dense.bias", "layer.{i}.attn_out.b"),
            Rename(L + "attention.output.LayerNorm.weight", "layer.{i}.ln1.g"),
            Rename(L + "attention.output.LayerNorm.bias", "layer.{i}.ln1.b"),
            Rename(L + "intermediate.dense.weight", "layer.{i}.ff1.w", Transpose()),
            Rename(L + "intermediate.dense.bias", "layer.{i}.ff1.b"),
            Rename(L + "output.dense.weight", "layer.{i}.ff2.w", Transpose()),
            Rename(L + "output.dense.bias", "layer.{i}.ff2.b"),
            Rename(L + "output.LayerNorm.weight", "layer.{i}.ln2.g"),
            Rename(L + "output.LayerNorm.bias", "layer.{i}.ln2.b"),
            Rename("pooler.dense.weight", "pooler.w", Transpose()),
            Rename("pooler.dense.bias", "pooler.b"),
            Rename("cls.predictions.transform.dense.weight", "mlm.dense.w", Transpose(), prefixed=False),
            Rename("cls.predictions.transform.dense.bias", "mlm.dense.b", prefixed=False),
            Rename("cls.predictions.transform.LayerNorm.weight", "mlm.ln.g", prefixed=False),
            Rename("cls.predictions.transform.LayerNorm.bias", "mlm.ln.b", prefixed=False),
            Rename("cls.predictions.bias", "mlm.bias", prefixed=False),
            Rename("cls.predictions.decoder.weight", "mlm.decoder.w", prefixed=False),
        ],
        ignore=[r"^embeddings\.position_ids$", r"^cls\.predictions\.decoder\.bias$"],
        tied={"mlm.decoder.w": "emb.word"},
        prefix="bert.",
        save_prefix=save_prefix,
    )


def bert_reference(sd: dict[str, np.ndarray], pooler: bool, mlm: bool) -> dict[str, np.ndarray]:
    """The graph params the map above should produce, computed by hand from a state dict."""
    p = "bert." if mlm else ""
    ref = {
        "emb.word": sd[p + "embeddings.word_embeddings.weight"],
        "emb.pos": sd[p + "embeddings.position_embeddings.weight"],
        "emb.type": sd[p + "embeddings.token_type_embeddings.weight"],
        "emb.ln.g": sd[p + "embeddings.LayerNorm.weight"],
        "emb.ln.b": sd[p + "embeddings.LayerNorm.bias"],
    }
    for i in range(BERT_CFG["num_hidden_layers"]):
        e = f"{p}encoder.layer.{i}."
        att = [sd[f"{e}attention.self.{n}.weight"] for n in ("query", "key", "value")]
        ref[f"layer.{i}.qkv.w"] = np.concatenate(att, 0).T
        ref[f"layer.{i}.qkv.b"] = np.concatenate([sd[f"{e}attention.self.{n}.bias"] for n in ("query", "key", "value")])
        for ours, theirs, t in [("attn_out", "attention.output.dense", True), ("ff1", "intermediate.dense", True),
                                ("ff2", "output.dense", True)]:
            ref[f"layer.{i}.{ours}.w"] = sd[f"{e}{theirs}.weight"].T if t else sd[f"{e}{theirs}.weight"]
            ref[f"layer.{i}.{ours}.b"] = sd[f"{e}{theirs}.bias"]
        for ours, theirs in [("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm")]:
            ref[f"layer.{i}.{ours}.g"] = sd[f"{e}{theirs}.weight"]
            ref[f"layer.{i}.{ours}.b"] = sd[f"{e}{theirs}.bias"]
    if pooler:
        ref["pooler.w"] = sd["pooler.dense.weight"].T
        ref["pooler.b"] = sd["pooler.dense.bias"]
    if mlm:
        c = "cls.predictions."
        ref.update({"mlm.dense.w": sd[c + "transform.dense.weight"].T, "mlm.dense.b": sd[c + "transform.dense.bias"],
                    "mlm.ln.g": sd[c + "transform.LayerNorm.weight"], "mlm.ln.b": sd[c + "transform.LayerNorm.bias"],
                    "mlm.bias": sd[c + "bias"], "mlm.decoder.w": ref["emb.word"]})
    return ref


def _numpy_sd(model) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny BertModel (single, sharded, .bin) and BertForMaskedLM checkpoints plus their state dicts."""
    root = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(**BERT_CFG)
    base = transformers.BertModel(cfg).eval()
    base.save_pretrained(root / "base")
    base.save_pretrained(root / "sharded", max_shard_size="20KB")
    (root / "bin").mkdir()
    torch.save(base.state_dict(), root / "bin" / "pytorch_model.bin")
    mlm = transformers.BertForMaskedLM(cfg).eval()
    mlm.save_pretrained(root / "mlm")
    return {"root": root, "base_sd": _numpy_sd(base), "mlm_sd": _numpy_sd(mlm)}


def _expected(ref: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (v.shape, "float32") for k, v in ref.items()}


def _assert_same(got: dict, ref: dict) -> None:
    assert list(got) == list(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(np.asarray(got[k], dtype=np.float32), v, err_msg=k)


@pytest.mark.parametrize("variant", ["base", "sharded", "bin"])
def test_load_base_model_every_format(ckpts, variant):
    ref = bert_reference(ckpts["base_sd"], pooler=True, mlm=False)
    with open_checkpoint(ckpts["root"] / variant) as ckpt:
        got = load_params(ckpt, bert_map(), _expected(ref))
    _assert_same(got, ref)
    assert all(a.flags.c_contiguous and a.dtype == np.float32 for a in got.values())


def test_load_prefixed_mlm_with_tie(ckpts):
    ref = bert_reference(ckpts["mlm_sd"], pooler=False, mlm=True)
    calls = []

    def to_native(name, array):
        calls.append(name)
        return torch.tensor(array)

    with open_checkpoint(ckpts["root"] / "mlm") as ckpt:
        assert "bert.embeddings.word_embeddings.weight" in ckpt
        assert "cls.predictions.decoder.weight" not in ckpt  # transformers omits the tied copy
        got = load_params(ckpt, bert_map(), _expected(ref), to_native=to_native)
    _assert_same({k: v.numpy() for k, v in got.items()}, ref)
    assert got["mlm.decoder.w"] is got["emb.word"]  # one native object for both names
    assert sorted(calls) == sorted(set(ref) - {"mlm.decoder.w"})  # converted once


def test_stored_copy_of_tied_weight_is_not_read(ckpts, tmp_path):
    sd = {k: v for k, v in ckpts["mlm_sd"].items()}
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"] + 1  # would differ
    sd["cls.predictions.decoder.bias"] = sd["cls.predictions.bias"]
    sd["bert.embeddings.position_ids"] = np.arange(64, dtype=np.int64)[None]  # ignorable buffer
    save_file(sd, str(tmp_path / "model.safetensors"))
    ref = bert_reference(ckpts["mlm_sd"], pooler=False, mlm=True)
    with open_checkpoint(tmp_path) as ckpt:
        got = load_params(ckpt, bert_map(), _expected(ref))
    _assert_same(got, ref)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cast_on_load(ckpts, dtype):
    ref = bert_reference(ckpts["base_sd"], pooler=True, mlm=False)
    with open_checkpoint(ckpts["root"] / "base") as ckpt:
        got = load_params(ckpt, bert_map(), _expected(ref), dtype=dtype)
    target = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(np.float16)
    for k, v in ref.items():
        assert got[k].dtype == target
        np.testing.assert_array_equal(got[k], v.astype(target))


def test_bf16_checkpoint_and_integer_tensors(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_file({"w": w.astype(ml_dtypes.bfloat16), "ids": np.arange(5, dtype=np.int64)}, str(tmp_path / "model.safetensors"))
    wm = WeightMap([Rename("w", "w", Transpose()), Rename("ids", "ids")])
    with open_checkpoint(tmp_path) as ckpt:
        assert ckpt.dtype("w") == "bfloat16" and ckpt.get("w").dtype == ml_dtypes.bfloat16
        got = load_params(ckpt, wm, {"w": ((4, 3), "float32"), "ids": ((5,), "int64")}, dtype="float16")
        as_expected = load_params(ckpt, wm, {"w": ((4, 3), "float32"), "ids": ((5,), None)})
    assert got["w"].dtype == np.float16 and got["ids"].dtype == np.int64  # ints keep their dtype
    np.testing.assert_array_equal(got["w"], w.T)
    assert as_expected["w"].dtype == np.float32  # no dtype given: the expected dtype


def test_strict_errors_listed_at_once(ckpts, tmp_path):
    sd = dict(ckpts["base_sd"])
    sd["encoder.layer.0.attention.self.rotary.weight"] = np.zeros(3, np.float32)  # matches no rule
    del sd["encoder.layer.1.attention.self.key.bias"]  # half of a Concat
    save_file(sd, str(tmp_path / "model.safetensors"))
    ref = bert_reference(ckpts["base_sd"], pooler=True, mlm=False)
    expected = _expected(ref)
    del expected["pooler.b"]  # checkpoint has it, the graph does not
    expected["extra.param"] = ((4,), "float32")  # graph has it, the checkpoint does not
    expected["emb.type"] = ((3, 32), "float32")  # checkpoint has [2, 32]
    read = []
    with open_checkpoint(tmp_path) as ckpt, pytest.raises(WeightsError) as err:
        load_params(ckpt, bert_map(), expected, to_native=lambda n, a: read.append(n))
    msg = str(err.value)
    for needle in ["extra.param", "pooler.dense.bias", "encoder.layer.0.attention.self.rotary.weight",
                   "encoder.layer.1.attention.self.key.bias", "layer.1.qkv.b", "emb.type", "[3, 32]", "[2, 32]",
                   "embeddings.token_type_embeddings.weight", "missing (2)", "unexpected (2)", "no rule of the weight map produces it", "wrong shape (1)"]:
        assert needle in msg, (needle, msg)
    assert read == []  # nothing converted before the check


def test_duplicate_with_and_without_prefix(ckpts, tmp_path):
    sd = dict(ckpts["base_sd"])
    sd["bert.pooler.dense.bias"] = sd["pooler.dense.bias"]
    save_file(sd, str(tmp_path / "model.safetensors"))
    ref = bert_reference(ckpts["base_sd"], pooler=True, mlm=False)
    with open_checkpoint(tmp_path) as ckpt, pytest.raises(WeightsError, match="duplicate"):
        load_params(ckpt, bert_map(), _expected(ref))


GPT2_CFG = dict(n_embd=32, n_layer=2, n_head=2, vocab_size=99, n_positions=64)
GPT2_MAP = WeightMap([
    Split("h.{i}.attn.c_attn.weight", ["h.{i}.q.w", "h.{i}.k.w", "h.{i}.v.w"], axis=0, transform=Transpose()),
    Split("h.{i}.attn.c_attn.bias", ["h.{i}.q.b", "h.{i}.k.b", "h.{i}.v.b"]),
    Rename("{name:.+}", "{name}"),  # everything else keeps its name
], prefix="transformer.", ignore=[r"\.attn\.(masked_)?bias$"])


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(1)
    model = transformers.GPT2Model(transformers.GPT2Config(**GPT2_CFG)).eval()
    model.save_pretrained(root)
    return root, _numpy_sd(model)


def _gpt2_reference(sd):
    ref = {}
    for k, v in sd.items():
        if k.endswith("c_attn.weight"):
            for n, part in zip("qkv", np.split(v.T, 3, axis=0)):
                ref[k.replace("attn.c_attn.weight", f"{n}.w")] = part
        elif k.endswith("c_attn.bias"):
            for n, part in zip("qkv", np.split(v, 3)):
                ref[k.replace("attn.c_attn.bias", f"{n}.b")] = part
        else:
            ref[k] = v
    return ref


def test_split_fused_qkv_and_save_roundtrip(gpt2, tmp_path):
    root, sd = gpt2
    ref = _gpt2_reference(sd)
    with open_checkpoint(root) as ckpt:
        got = load_params(ckpt, GPT2_MAP, _expected(ref))
    for k, v in ref.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    save_params(tmp_path, got, GPT2_MAP, json.loads((root / "config.json").read_text()))
    back = transformers.GPT2Model.from_pretrained(tmp_path)
    for k, v in _numpy_sd(back).items():
        np.testing.assert_array_equal(v, sd[k], err_msg=k)


def test_split_sizes_from_expected_shapes(tmp_path):
    fused = np.arange(12, dtype=np.float32).reshape(4, 3)  # e.g. grouped-query attention: q 2 rows, k 1, v 1
    save_file({"qkv": fused}, str(tmp_path / "model.safetensors"))
    wm = WeightMap([Split("qkv", ["q", "k", "v"], axis=0)])
    with open_checkpoint(tmp_path) as ckpt:
        got = load_params(ckpt, wm, {"q": (2, 3), "k": (1, 3), "v": (1, 3)})
    np.testing.assert_array_equal(got["q"], fused[:2])
    np.testing.assert_array_equal(got["v"], fused[3:])
    save_params(tmp_path / "out", got, wm, None)
    with open_checkpoint(tmp_path / "out") as ckpt:
        np.testing.assert_array_equal(ckpt.get("qkv"), fused)


def test_concat_reshape_rules_invert():
    rule = Concat(["a.{i}", "b.{i}"], "ab.{i}", axis=1, transform=[Reshape((-1,), back=(2, 5))], sizes=[2, 3])
    a, b = np.ones((2, 2)), np.zeros((2, 3))
    (out,) = rule.forward([a, b])
    assert out.shape == (10,) and rule.forward_shapes([(2, 2), (2, 3)]) == [(10,)]
    a2, b2 = rule.backward([out])
    np.testing.assert_array_equal(a2, a)
    np.testing.assert_array_equal(b2, b)
    assert rule.backward_shapes([(10,)]) == [(2, 2), (2, 3)]
    with pytest.raises(WeightsError, match="same placeholders"):
        Rename("x.{i}.w", "x.w")
    with pytest.raises(WeightsError, match="back="):
        Rename("w", "w", Reshape((-1,))).backward([np.ones(4)])


@pytest.mark.parametrize("sharded", [False, True])
def test_save_mlm_loads_in_transformers(ckpts, tmp_path, sharded):
    ref = bert_reference(ckpts["mlm_sd"], pooler=False, mlm=True)
    wm = bert_map(save_prefix=True)
    with open_checkpoint(ckpts["root"] / "mlm") as ckpt:
        params = load_params(ckpt, wm, _expected(ref))
    config = json.loads((ckpts["root"] / "mlm" / "config.json").read_text())
    written = save_params(tmp_path, params, wm, config, max_shard_size="20KB" if sharded else "5GB")
    assert (tmp_path / "model.safetensors.index.json").is_file() == sharded and len(written) > (3 if sharded else 1)
    with open_checkpoint(tmp_path) as ckpt:
        assert "cls.predictions.decoder.weight" not in ckpt  # tied weight stored once
        assert "bert.embeddings.word_embeddings.weight" in ckpt
        if not sharded:
            assert ckpt.metadata == {"format": "pt"}
    model, info = transformers.BertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for k, v in _numpy_sd(model).items():
        np.testing.assert_array_equal(v, ckpts["mlm_sd"][k], err_msg=k)


def test_save_base_automodel_roundtrip_and_resave(ckpts, tmp_path):
    ref = bert_reference(ckpts["base_sd"], pooler=True, mlm=False)
    config = json.loads((ckpts["root"] / "base" / "config.json").read_text())
    with open_checkpoint(ckpts["root"] / "base") as ckpt:
        params = load_params(ckpt, bert_map(), _expected(ref))
    save_params(tmp_path, params, bert_map(), config, max_shard_size="20KB")
    # Saving again unsharded over the same directory replaces the shards (and the index).
    with open_checkpoint(tmp_path) as ckpt:
        params = load_params(ckpt, bert_map(), _expected(ref))
        save_params(tmp_path, params, bert_map(), config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    model = transformers.AutoModel.from_pretrained(tmp_path)
    for k, v in _numpy_sd(model).items():
        np.testing.assert_array_equal(v, ckpts["base_sd"][k], err_msg=k)


def test_save_rejects_unmapped_params(tmp_path):
    wm = WeightMap([Split("qkv", ["q", "k", "v"])])
    with pytest.raises(WeightsError) as err:
        save_params(tmp_path, {"q": np.ones(2), "k": np.ones(2), "stray": np.ones(1)}, wm, None)
    assert "stray" in str(err.value) and "'v'" in str(err.value)


def test_progress_bar(ckpts, capsys):
    ref = bert_reference(ckpts["base_sd"], pooler=True, mlm=False)
    with open_checkpoint(ckpts["root"] / "base") as ckpt:
        load_params(ckpt, bert_map(), _expected(ref), progress=True)
    assert "Loading weights" in capsys.readouterr().err
