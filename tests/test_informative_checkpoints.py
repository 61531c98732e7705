"""The test checkpoints can fail a wrong model: each planted breakage of a checkpoint (biases dropped,
norm weights ignored, query and key swapped, a head bias dropped, relative distances mirrored) moves isoform's outputs far beyond
the parity tolerance against transformers on the intact checkpoint, for every model family's
fixture. If a breakage stayed within tolerance, the parity suite could not see that bug."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import isoform
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")

TOL = 1e-4
MARGIN = 10  # a breakage must move outputs by at least MARGIN x TOL
VOCAB = 99
FAMILIES = {
    "bert": (
        "BertForSequenceClassification",
        dict(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
        ),
    ),
    "gpt2": ("GPT2LMHeadModel", dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
    "llama": (
        "LlamaForCausalLM",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            attention_bias=True,
        ),
    ),
    "bart": (
        "BartForConditionalGeneration",
        dict(
            vocab_size=VOCAB,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            max_position_embeddings=64,
        ),
    ),
    "t5": (
        "T5ForConditionalGeneration",
        dict(
            vocab_size=VOCAB,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        ),
    ),
    "deberta-v2": (  # DeBERTa-v3's shape: c2p + p2c over log-bucketed distances, shared projections
        "DebertaV2ForSequenceClassification",
        dict(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            relative_attention=True, pos_att_type="p2c|c2p", position_buckets=4, max_relative_positions=12,
            share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0,
        ),
    ),
}
NORM = re.compile(r"(norm|LayerNorm|ln_\w+)\.(weight|bias)$")
QK = [("query", "key"), ("q_proj", "k_proj"), ("c_attn", None), (".q.", ".k.")]


def drop_biases(params: dict[str, np.ndarray]) -> None:
    for k in params:
        if k.endswith(".bias") and not NORM.search(k):
            params[k] = np.zeros_like(params[k])


def ignore_norm_weights(params: dict[str, np.ndarray]) -> None:
    for k in params:
        if m := NORM.search(k):
            params[k] = (np.ones_like if m.group(2) == "weight" else np.zeros_like)(params[k])


def swap_query_key(params: dict[str, np.ndarray]) -> None:
    for k in list(params):
        if k.endswith("c_attn.weight"):  # GPT-2: fused [in, 3 * out] = q | k | v
            q, key, v = np.split(params[k], 3, axis=1)
            params[k] = np.concatenate([key, q, v], axis=1)
        for q_name, k_name in QK:
            if k_name and q_name in k and k.endswith("weight"):
                other = k.replace(q_name, k_name)
                params[k], params[other] = params[other], params[k]


def drop_head_bias(params: dict[str, np.ndarray]) -> None:
    for k in params:
        if k in ("final_logits_bias", "classifier.bias"):
            params[k] = np.zeros_like(params[k])


def mirror_relative_distances(params: dict[str, np.ndarray]) -> None:
    """Reverse the relative-position table: every distance reads the row of its opposite sign."""
    for k in params:
        if k.endswith("rel_embeddings.weight"):
            params[k] = params[k][::-1].copy()


BREAKAGES = {
    "drop-biases": drop_biases,
    "ignore-norm-weights": ignore_norm_weights,
    "swap-query-key": swap_query_key,
    "drop-head-bias": drop_head_bias,
    "mirror-relative-distances": mirror_relative_distances,
}
APPLIES = {
    "drop-head-bias": ("bert", "bart", "deberta-v2"),
    "drop-biases": ("bert", "gpt2", "llama", "bart", "deberta-v2"),
    "mirror-relative-distances": ("deberta-v2",),
}  # T5 has no biases


def inputs(cls: str) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(3, VOCAB, (2, 9))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if "ConditionalGeneration" in cls:
        out["decoder_input_ids"] = ids[:, :5]
    return out


def hf_logits(model, feed: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()


def task(cls: str) -> str:
    return (
        "seq2seq-lm"
        if "ConditionalGeneration" in cls
        else "causal-lm"
        if "LM" in cls
        else "sequence-classification"
    )


CASES = [
    pytest.param(fam, br, id=f"{fam}-{br}")
    for fam in FAMILIES
    for br in BREAKAGES
    if fam in APPLIES.get(br, FAMILIES)
]


@pytest.mark.parametrize(("family", "breakage"), CASES)
def test_broken_checkpoint_fails_parity(hf_checkpoint, tmp_path, family, breakage):
    cls, config = FAMILIES[family]
    path, hf = hf_checkpoint(cls, **config)
    feed = inputs(cls)
    want = hf_logits(hf, feed)
    model = isoform.Model.load(path, backend="numpy", task=task(cls))
    intact = model(**feed).numpy()["logits"]
    assert record_model(model, float(np.abs(intact - want).max())) <= TOL  # the intact checkpoint is at parity

    broken_dir = tmp_path / "broken"
    shutil.copytree(path, broken_dir)
    params = load_file(broken_dir / "model.safetensors")
    before = {k: v.copy() for k, v in params.items()}
    BREAKAGES[breakage](params)
    assert any(not np.array_equal(before[k], params[k]) for k in params), (
        f"{breakage} changed nothing in {family}"
    )
    save_file(params, broken_dir / "model.safetensors", metadata={"format": "pt"})
    got = isoform.Model.load(broken_dir, backend="numpy", task=task(cls))(**feed).numpy()["logits"]
    assert np.abs(got - want).max() > MARGIN * TOL, (
        f"{breakage} stays within {MARGIN}x the tolerance on {family}"
    )
