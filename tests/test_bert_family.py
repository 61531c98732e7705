"""Parity with transformers for the BERT family (BERT, RoBERTa, XLM-RoBERTa, CamemBERT, ELECTRA,
DistilBERT, ALBERT, MPNet, Megatron-BERT, I-BERT, LayoutLM, RoFormer, ConvBERT, MobileBERT,
SqueezeBERT, DeBERTa, DeBERTa-v2, Funnel Transformer; BORT's shape of BERT):
every architecture x task head x config variation x backend, on random ids with a padded row.
Expected outputs are computed by transformers here, never pasted."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import isoform
from isoform.architectures import REGISTRY
from isoform.architectures.audio import AudioEncoder
from isoform.architectures.bert import Bert
from isoform.architectures.causal import CausalLM
from isoform.architectures.seq2seq import EncoderDecoder
from isoform.architectures.towers import Towers
from isoform.architectures.vision import VisionEncoder
from isoform.errors import ConfigError, InputError
from isoform.testing.coverage import check_task_coverage
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")

TOL = 1e-4
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40)
ROBERTA = dict(TINY, pad_token_id=1, type_vocab_size=1, max_position_embeddings=42)
ELECTRA = dict(TINY, embedding_size=16)
DISTIL = dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=40)
ALBERT = dict(TINY, embedding_size=16, num_hidden_layers=3, hidden_act="gelu_new")
MPNET = dict(TINY, pad_token_id=1, max_position_embeddings=42, relative_attention_num_buckets=32)
IBERT = dict(TINY, pad_token_id=1, max_position_embeddings=42)  # RoBERTa positions, two token types
LAYOUTLM = dict(TINY, max_2d_position_embeddings=23)
# BORT (amazon/bort) is a BERT checkpoint: 4 layers, 16 heads, hidden 1024, intermediate 768 < hidden
BORT = dict(TINY, hidden_size=48, num_hidden_layers=4, num_attention_heads=16, intermediate_size=36, pad_token_id=1,
            type_vocab_size=1)
# Funnel: 3 blocks (seq 11 pools to 6, then 3), d_head * n_head != d_model; type_vocab_size (not a Funnel key)
# makes make_inputs draw token types 0..2, 2 being <cls>'s
FUNNEL = dict(vocab_size=99, block_sizes=[1, 2, 1], num_decoder_layers=2, d_model=32, n_head=4, d_head=7, d_inner=37,
              type_vocab_size=3)
MOBILEBERT = dict(TINY, embedding_size=16, intra_bottleneck_size=24, num_feedforward_networks=3)  # trigram, NoNorm
SQUEEZEBERT = dict(TINY, embedding_size=32, intermediate_size=36)  # q/k/v, intermediate, output groups 4
ROFORMER = dict(TINY, embedding_size=24)
CONVBERT = dict(TINY, embedding_size=24, pad_token_id=1, conv_kernel_size=9)  # head_ratio 2: 2 attention + 2 conv heads
# DeBERTa: relative distances (6) shorter than the inputs (11), so the clamp is exercised; v3's shape: log-bucketed
# distances (4 exact buckets of 8, beyond log-spaced up to 20), shared position projections, layer-normed table
DEBERTA = dict(TINY, type_vocab_size=0, relative_attention=True, pos_att_type="c2p|p2c", max_relative_positions=6)
DEBERTA_V3 = dict(DEBERTA, position_buckets=8, max_relative_positions=20, share_att_key=True,
                  norm_rel_ebd="layer_norm", position_biased_input=False)
NO_TOKEN_TYPES = ("n_layers", "relative_attention_num_buckets")  # config keys of DistilBERT, MPNet
HEADS = {None: "Model", "masked-lm": "ForMaskedLM", "sequence-classification": "ForSequenceClassification",
         "token-classification": "ForTokenClassification", "question-answering": "ForQuestionAnswering",
         "multiple-choice": "ForMultipleChoice"}
ALL = list(HEADS)

# (case id, transformers class prefix, config, tasks)
FAMILIES = [
    ("bert", "Bert", TINY, ALL),
    ("bert-gelu_new-untied", "Bert", dict(TINY, hidden_act="gelu_new", layer_norm_eps=1e-5, tie_word_embeddings=False),
     [None, "masked-lm"]),
    ("bert-relu-regression", "Bert", dict(TINY, hidden_act="relu", num_labels=1, problem_type="regression"),
     ["sequence-classification"]),
    ("bert-multilabel", "Bert", dict(TINY, hidden_act="quick_gelu", num_labels=5,
                                     problem_type="multi_label_classification"), ["sequence-classification"]),
    ("bert-decoder", "Bert", dict(TINY, is_decoder=True, hidden_act="gelu_fast"), [None]),
    ("bert-3types", "Bert", dict(TINY, type_vocab_size=3, hidden_act="silu"), ["token-classification"]),
    ("roberta", "Roberta", ROBERTA, ALL),
    ("roberta-untied-swish", "Roberta", dict(ROBERTA, hidden_act="swish", tie_word_embeddings=False), ["masked-lm"]),
    ("xlm-roberta", "XLMRoberta", ROBERTA, ALL),
    ("camembert", "Camembert", dict(ROBERTA, pad_token_id=3), ALL),
    ("electra", "Electra", ELECTRA, [*ALL, "pretraining"]),
    ("electra-same-size-untied", "Electra", dict(TINY, embedding_size=32, tie_word_embeddings=False),
     [None, "masked-lm", "pretraining"]),
    ("electra-summary-mean", "Electra", dict(ELECTRA, summary_type="mean", summary_activation="tanh"),
     ["multiple-choice"]),
    ("distilbert", "DistilBert", DISTIL, ALL),
    ("distilbert-relu-untied", "DistilBert", dict(DISTIL, activation="relu", tie_word_embeddings=False), ["masked-lm"]),
    ("albert", "Albert", ALBERT, ALL),
    ("albert-groups", "Albert", dict(ALBERT, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2,
                                     tie_word_embeddings=False), [None, "masked-lm"]),
    ("mpnet", "MPNet", MPNET, ALL),
    ("mpnet-relu-untied", "MPNet", dict(MPNET, hidden_act="relu", tie_word_embeddings=False), ["masked-lm"]),
    ("megatron-bert", "MegatronBert", TINY, [*ALL, "pretraining"]),
    ("megatron-bert-relu-untied", "MegatronBert", dict(TINY, hidden_act="relu", tie_word_embeddings=False),
     ["masked-lm", "pretraining"]),
    ("megatron-bert-decoder", "MegatronBert", dict(TINY, is_decoder=True, layer_norm_eps=1e-5), [None]),
    ("ibert", "IBert", IBERT, ALL),
    ("ibert-untied-1type", "IBert", dict(IBERT, tie_word_embeddings=False, type_vocab_size=1), [None, "masked-lm"]),
    ("layoutlm", "LayoutLM", LAYOUTLM, [t for t in ALL if t != "multiple-choice"]),
    ("layoutlm-gelu_new-untied", "LayoutLM", dict(LAYOUTLM, hidden_act="gelu_new", tie_word_embeddings=False),
     ["masked-lm"]),
    ("bort", "Bert", BORT, ALL),
    ("funnel", "Funnel", FUNNEL, [*ALL, "pretraining", "encoder"]),
    ("funnel-factorized-max", "Funnel", dict(FUNNEL, attention_type="factorized", pooling_type="max"),
     [None, "encoder"]),
    ("funnel-no-separate-cls-pool-qkv-relu", "Funnel", dict(FUNNEL, separate_cls=False, pool_q_only=False,
                                                           hidden_act="relu"), [None, "encoder"]),
    ("funnel-2-blocks-no-truncate-repeats-untied", "Funnel", dict(FUNNEL, block_sizes=[2, 1], block_repeats=[2, 3],
                                                                 truncate_seq=False, tie_word_embeddings=False),
     ["masked-lm", "encoder"]),
    ("funnel-factorized-pool-qkv", "Funnel", dict(FUNNEL, attention_type="factorized", pool_q_only=False,
                                                 truncate_seq=False), ["token-classification"]),
    ("funnel-one-block", "Funnel", dict(FUNNEL, block_sizes=[2], num_decoder_layers=1), [None]),
    ("mobilebert", "MobileBert", MOBILEBERT, [*ALL, "pretraining"]),
    ("mobilebert-layer_norm-gelu-untied", "MobileBert", dict(MOBILEBERT, normalization_type="layer_norm",
                                                             hidden_act="gelu", tie_word_embeddings=False),
     [None, "masked-lm", "pretraining"]),
    ("mobilebert-bottleneck-attention", "MobileBert", dict(MOBILEBERT, use_bottleneck_attention=True), [None]),
    ("mobilebert-unshared-bottleneck", "MobileBert", dict(MOBILEBERT, key_query_shared_bottleneck=False,
                                                          intra_bottleneck_size=32), [None]),
    ("mobilebert-no-bottleneck-no-trigram", "MobileBert", dict(MOBILEBERT, use_bottleneck=False, trigram_input=False,
                                                            classifier_activation=False, num_feedforward_networks=1),
     [None, "sequence-classification"]),
    ("mobilebert-same-size", "MobileBert", dict(MOBILEBERT, embedding_size=32, trigram_input=False), [None, "masked-lm"]),
    ("squeezebert", "SqueezeBert", SQUEEZEBERT, ALL),
    ("squeezebert-mixed-groups-untied", "SqueezeBert", dict(SQUEEZEBERT, q_groups=2, k_groups=1, v_groups=8,
                                                            post_attention_groups=2, intermediate_groups=1,
                                                            output_groups=2, hidden_act="gelu_new",
                                                            layer_norm_eps=1e-5, tie_word_embeddings=False),
     [None, "masked-lm"]),
    ("roformer", "RoFormer", ROFORMER, ALL),
    ("roformer-same-size-rotary-value", "RoFormer", dict(TINY, rotary_value=True, hidden_act="gelu_new",
                                                         tie_word_embeddings=False), [None, "masked-lm"]),
    ("roformer-decoder", "RoFormer", dict(ROFORMER, is_decoder=True, rotary_value=True), [None]),
    ("roformer-summary-first", "RoFormer", dict(ROFORMER, summary_type="first", summary_use_proj=True,
                                                summary_activation="tanh", hidden_act="relu"),
     ["multiple-choice", "sequence-classification"]),
    ("convbert", "ConvBert", CONVBERT, ALL),
    ("convbert-groups-kernel3", "ConvBert", dict(CONVBERT, num_groups=2, intermediate_size=38, conv_kernel_size=3,
                                                 hidden_act="gelu_new", tie_word_embeddings=False), [None, "masked-lm"]),
    ("convbert-ratio4-kernel5", "ConvBert", dict(TINY, num_attention_heads=8, head_ratio=4, conv_kernel_size=5,
                                                 num_groups=4, intermediate_size=36, hidden_act="relu"),
     [None, "sequence-classification"]),
    ("convbert-one-head-summary", "ConvBert", dict(CONVBERT, head_ratio=8, summary_type="mean", summary_use_proj=True,
                                                   summary_activation="tanh"), ["multiple-choice"]),
    ("deberta", "Deberta", DEBERTA, [t for t in ALL if t != "multiple-choice"]),
    ("deberta-p2c-emd-types", "Deberta", dict(DEBERTA, pos_att_type="p2c", legacy=False, type_vocab_size=2,
                                             max_relative_positions=-1, hidden_act="gelu_new"), [None, "masked-lm"]),
    ("deberta-absolute-small-embeddings", "Deberta", dict(TINY, type_vocab_size=0, embedding_size=16),
     [None, "masked-lm", "sequence-classification"]),
    ("deberta-c2p-untied", "Deberta", dict(DEBERTA, pos_att_type=["c2p"], tie_word_embeddings=False,
                                          pooler_hidden_act="tanh"), ["masked-lm", "sequence-classification"]),
    ("deberta-v2", "DebertaV2", DEBERTA_V3, ALL),
    ("deberta-v2-conv-small-embeddings", "DebertaV2", dict(DEBERTA, conv_kernel_size=3, conv_groups=2, embedding_size=16,
                                                           type_vocab_size=2, pos_att_type=["c2p"]),
     [None, "masked-lm", "token-classification"]),
    ("deberta-v2-emd-conv5", "DebertaV2", dict(DEBERTA_V3, legacy=False, conv_kernel_size=5, conv_act="gelu",
                                               share_att_key=False, pooler_hidden_act="tanh"),
     [None, "masked-lm", "multiple-choice"]),
]
CASES = [pytest.param(fam, cls, cfg, task, id=f"{fam}-{task or 'base'}") for fam, cls, cfg, tasks in FAMILIES
         for task in tasks]


def hf_class(prefix: str, task: str | None) -> str:
    return prefix + ({"pretraining": "ForPreTraining", "encoder": "BaseModel"}.get(task) or HEADS[task])


def make_inputs(config: dict, task: str | None, seed: int = 0, seq: int = 11) -> dict[str, np.ndarray]:
    """Batch of 2 with row 1 padded after 7 tokens (multiple choice: 3 choices each)."""
    rng = np.random.default_rng(seed)
    shape = (2, 3, seq) if task == "multiple-choice" else (2, seq)
    pad = config.get("pad_token_id", 0)
    ids = rng.integers(pad + 1 if pad < 5 else 0, config["vocab_size"], shape)
    mask = np.ones(shape, np.int64)
    mask[1, ..., 7:] = 0
    ids[mask == 0] = pad
    inputs = {"input_ids": ids, "attention_mask": mask}
    if not any(k in config for k in NO_TOKEN_TYPES) and config.get("type_vocab_size", 2) > 1:
        inputs["token_type_ids"] = rng.integers(0, config.get("type_vocab_size", 2), shape)
    if "max_2d_position_embeddings" in config:  # LayoutLM: random boxes (x0, y0, x1, y1), x0 <= x1, y0 <= y1
        corners = rng.integers(0, config["max_2d_position_embeddings"], (*shape, 2, 2))
        inputs["bbox"] = np.concatenate([corners.min(-2), corners.max(-2)], axis=-1)
    return inputs


def reference(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


def config_for(config: dict, task: str | None) -> dict:
    return dict(config, num_labels=2) if task == "question-answering" else dict({"num_labels": 3}, **config)


def max_diff(got: dict, want: dict) -> float:
    assert set(got) == set(want), f"outputs {sorted(got)} != transformers {sorted(want)}"
    for k in got:
        assert got[k].shape == want[k].shape, f"{k}: {got[k].shape} vs {want[k].shape}"
    return max(float(np.abs(got[k].astype(np.float64) - want[k]).max()) for k in got)


@pytest.mark.parametrize(("family", "cls", "config", "task"), CASES)
def test_parity(hf_checkpoint, backend, family, cls, config, task):
    config = config_for(config, task)
    path, hf = hf_checkpoint(hf_class(cls, task), **config)
    inputs = make_inputs(config, task)
    want = reference(hf, inputs)
    model = isoform.Model.load(path, backend=backend, task=task)
    got = model(**inputs).numpy()
    assert record_model(model, max_diff(got, want)) <= TOL


def test_cases_cover_every_declared_task():
    """Each (model_type, task) a BERT-family architecture declares has a parity case, built from the
    transformers class the architecture names for it: a new architecture or head fails here until tested."""
    check_task_coverage(Bert, {hf_class(cls, task) for _, cls, _, tasks in FAMILIES for task in tasks})


def test_every_architecture_has_a_parity_file():
    """Every registered architecture is an encoder (this file), a decoder-only LM (test_decoders.py), an
    encoder-decoder (test_seq2seq.py), an image encoder or a multi-tower model (test_vision.py): each of those files checks it
    covers its own."""
    owners = (Bert, CausalLM, EncoderDecoder, VisionEncoder, Towers, AudioEncoder)
    stray = {t: [o.__name__ for o in owners if issubclass(a, o)] for t, a in REGISTRY.items()}
    assert {t: o for t, o in stray.items() if len(o) != 1} == {}


@pytest.mark.parametrize("task", [None, "masked-lm", "multiple-choice"])
def test_bucketed_matches_unbucketed(hf_checkpoint, task):
    config = config_for(ROBERTA, task)
    path, _ = hf_checkpoint(hf_class("Roberta", task), **config)
    model = isoform.Model.load(path, task=task)
    inputs = make_inputs(config, task, seq=9)
    plain = model(**inputs).numpy()
    model.bucket = 16
    padded = model._pad(model._prepare(inputs)[0], 9)
    assert padded["input_ids"].shape[-1] == 16
    bucketed = model(**inputs).numpy()
    for k in plain:
        assert plain[k].shape == bucketed[k].shape
        np.testing.assert_allclose(bucketed[k], plain[k], atol=1e-5, rtol=0)


def test_bucket_is_capped_at_max_positions(hf_checkpoint):
    path, _ = hf_checkpoint("RobertaModel", **ROBERTA)
    model = isoform.Model.load(path)
    model.bucket = 32
    longest = ROBERTA["max_position_embeddings"] - ROBERTA["pad_token_id"] - 1
    arrays, _ = model._prepare({"input_ids": np.full((1, 33), 5)})
    assert model._pad(arrays, 33)["input_ids"].shape[-1] == longest
    assert model(input_ids=np.full((1, longest), 5))["last_hidden_state"].shape == (1, longest, 32)


def test_defaults_match_transformers(hf_checkpoint):
    """No attention_mask -> all ones; no token_type_ids -> zeros (as transformers)."""
    path, hf = hf_checkpoint("BertModel", **TINY)
    ids = make_inputs(TINY, None)["input_ids"]
    model = isoform.Model.load(path)
    assert record_model(model, max_diff(model(input_ids=ids).numpy(), reference(hf, {"input_ids": ids}))) <= TOL


def test_base_model_from_task_checkpoint(hf_checkpoint):
    """AutoModel-like: a masked-LM checkpoint (no pooler, with a head) loads as the bare model."""
    path, hf = hf_checkpoint("BertForMaskedLM", **TINY)
    model = isoform.Model.load(path)
    assert list(model.graph.outputs) == ["last_hidden_state"]
    inputs = make_inputs(TINY, None)
    with torch.no_grad():
        want = hf.bert(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert record_model(model, float(np.abs(model(**inputs).numpy()["last_hidden_state"] - want).max())) <= TOL


@pytest.mark.parametrize(("cls", "config"), [("Bert", TINY), ("Roberta", ROBERTA), ("Electra", ELECTRA),
                                             ("DistilBert", DISTIL), ("Albert", ALBERT),
                                             ("MPNet", MPNET), ("MegatronBert", TINY), ("IBert", IBERT),
                                             ("LayoutLM", LAYOUTLM)])
def test_tied_decoder_is_one_param(hf_checkpoint, cls, config):
    path, _ = hf_checkpoint(f"{cls}ForMaskedLM", **config)
    names = [p.name for p in isoform.Model.load(path, task="masked-lm").graph.params]
    assert not any(n.endswith(("decoder.weight", "generator_lm_head.weight", "vocab_projector.weight")) for n in names)
    assert names.count("embeddings.word_embeddings.weight") == 1


@pytest.mark.parametrize(("cls", "config", "task"), [
    ("Bert", TINY, "masked-lm"), ("Bert", dict(TINY, tie_word_embeddings=False), "masked-lm"),
    ("Bert", TINY, "multiple-choice"), ("Bert", TINY, None), ("Roberta", ROBERTA, "sequence-classification"),
    ("Electra", ELECTRA, "masked-lm"), ("Electra", ELECTRA, "pretraining"), ("XLMRoberta", ROBERTA, "masked-lm"),
    ("DistilBert", DISTIL, "masked-lm"), ("Albert", dict(ALBERT, num_hidden_groups=3), "sequence-classification"),
    ("MPNet", MPNET, "multiple-choice"), ("MegatronBert", TINY, "pretraining"), ("IBert", IBERT, "masked-lm"),
    ("LayoutLM", LAYOUTLM, "sequence-classification"), pytest.param("Bert", BORT, "masked-lm", id="bort-masked-lm"),
    ("Deberta", DEBERTA, "masked-lm"), ("DebertaV2", dict(DEBERTA_V3, legacy=False), "masked-lm"),
    ("DebertaV2", dict(DEBERTA_V3, conv_kernel_size=3), "multiple-choice"),
])
def test_save_round_trip(hf_checkpoint, tmp_path, cls, config, task):
    """isoform save -> transformers from_pretrained -> the same outputs (and isoform reloads it too)."""
    import transformers

    config = config_for(config, task)
    path, _ = hf_checkpoint(hf_class(cls, task), seed=1, **config)
    model = isoform.Model.load(path, task=task)
    model.save(tmp_path)
    inputs = make_inputs(config, task)
    ours = model(**inputs).numpy()
    back = getattr(transformers, hf_class(cls, task)).from_pretrained(tmp_path).eval()
    assert record_model(model, max_diff(ours, reference(back, inputs))) <= TOL
    again = isoform.Model.load(tmp_path, task=task)(**inputs).numpy()
    assert max_diff(again, ours) == 0.0


def test_to_other_backend_keeps_weights(hf_checkpoint, backend):
    path, hf = hf_checkpoint("ElectraForPreTraining", **ELECTRA)
    model = isoform.Model.load(path, task="pretraining")
    moved = model.to(backend)
    assert moved.backend.name == backend and moved.graph is model.graph
    inputs = make_inputs(ELECTRA, "pretraining")
    assert record_model(moved, max_diff(moved(**inputs).numpy(), reference(hf, inputs))) <= TOL


def test_native_inputs_and_warmup(hf_checkpoint, backend):
    path, hf = hf_checkpoint("BertForTokenClassification", **config_for(TINY, "token-classification"))
    model = isoform.Model.load(path, backend=backend, task="token-classification")
    assert model.warmup(batch=2, seq=11) >= 0
    inputs = make_inputs(TINY, "token-classification")
    native = {k: model.backend.to_native(v, isoform.ir.DType.i64) for k, v in inputs.items()}
    assert record_model(model, max_diff(model(**native).numpy(), reference(hf, inputs))) <= TOL


def test_graph_params_follow_hf_names(hf_checkpoint):
    path, _ = hf_checkpoint("BertModel", **TINY)
    model = isoform.Model.load(path)
    names = {p.name for p in model.graph.params}
    assert "encoder.layer.0.attention.self.query.weight" in names
    assert "pooler.dense.weight" in names
    assert model.config.hidden_size == 32 and "encoder.layer.1" in str(model.graph)


def test_albert_shares_layer_params(hf_checkpoint):
    path, _ = hf_checkpoint("AlbertModel", **dict(ALBERT, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2))
    model = isoform.Model.load(path)
    parts = [p.name.split(".") for p in model.graph.params if p.name.startswith("encoder.albert_layer_groups.")]
    groups = {f"{g}.{j}" for _, _, g, _, j, *_ in parts}
    assert groups == {"0.0", "0.1", "1.0", "1.1"}  # 4 steps x 2 layers = 8 layers from 4 param sets
    matmuls = sum(n.op == "matmul" for n in model.graph.nodes)
    assert matmuls > 4 * 8


def test_ibert_skips_quantization_state(hf_checkpoint):
    """transformers saves I-BERT's quantization buffers even with quant_mode=False: skipped on load."""
    from safetensors import safe_open

    path, _ = hf_checkpoint("IBertForMaskedLM", **IBERT)
    with safe_open(path / "model.safetensors", "np") as f:
        saved = set(f.keys())
    assert {"ibert.embeddings.embeddings_act1.x_min", "ibert.encoder.layer.0.attention.self.query.weight_integer",
            "ibert.encoder.layer.0.output.LayerNorm.shift"} <= saved
    names = {p.name for p in isoform.Model.load(path, task="masked-lm").graph.params}
    assert all(n in saved or f"ibert.{n}" in saved for n in names)
    assert not any(n.endswith(("x_min", "x_max", "_integer", "scaling_factor", ".shift")) for n in names)


def test_ibert_quant_mode_is_refused(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint("IBertModel", **IBERT)
    shutil.copytree(path, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, quant_mode=True)))
    with pytest.raises(ConfigError, match=r"quant_mode.*integer-only kernels are not implemented"):
        isoform.Model.load(tmp_path)


def test_layoutlm_default_bbox_is_zeros_as_transformers(hf_checkpoint):
    path, hf = hf_checkpoint("LayoutLMModel", **LAYOUTLM)
    inputs = {k: v for k, v in make_inputs(LAYOUTLM, None).items() if k != "bbox"}
    model = isoform.Model.load(path)
    assert record_model(model, max_diff(model(**inputs).numpy(), reference(hf, inputs))) <= TOL


def _bbox_set(at, value):
    def change(bbox):
        bbox[at] = value
    return change


@pytest.mark.parametrize(("change", "pattern"), [
    (_bbox_set((0, 2, 2), 23), r"bbox holds 23 at index \(0, 2, 2\), outside \[0, 23\) where 23 is max_2d_position_embeddings"),
    (_bbox_set((1, 3, 0), -1), r"bbox holds -1 at index \(1, 3, 0\), outside \[0, 23\)"),
    (_bbox_set((1, 4), [9, 2, 8, 5]), r"bbox holds \[9, 2, 8, 5\] at index \(1, 4\).*x0 <= x1 and y0 <= y1"),
    (_bbox_set((0, 1), [3, 7, 4, 6]), r"bbox holds \[3, 7, 4, 6\] at index \(0, 1\).*x0 <= x1 and y0 <= y1"),
], ids=["over-bound", "negative", "x1<x0", "y1<y0"])
def test_layoutlm_bad_bbox_names_it(hf_checkpoint, change, pattern):
    path, _ = hf_checkpoint("LayoutLMModel", **LAYOUTLM)
    model = isoform.Model.load(path)
    inputs = make_inputs(LAYOUTLM, None)
    change(inputs["bbox"])
    with pytest.raises(InputError, match=pattern):
        model(**inputs)
    with pytest.raises(InputError, match=r"bbox must have shape \[batch, seq, 4\]"):
        model(**dict(inputs, bbox=inputs["bbox"][..., :3]))


@pytest.mark.parametrize(("model_type", "change", "pattern"), [
    ("roformer", dict(hidden_size=36), r"hidden_size / num_attention_heads \(9\) must be even"),
    ("convbert", dict(conv_kernel_size=4), r"conv_kernel_size \(4\) must be odd"),
    ("convbert", dict(num_groups=3), r"hidden_size \(32\) must be a multiple of num_groups \(3\)"),
    ("convbert", dict(hidden_size=36, head_ratio=1), r"hidden_size \(36\) must be a multiple of 2 x the attention heads"),
    ("deberta", dict(talking_head=True), r"talking_head=True .* is not supported"),
    ("deberta", dict(pos_att_type="c2p|p2p"), r"pos_att_type.1: Input should be 'c2p' or 'p2c'"),
    ("deberta", dict(legacy=False, embedding_size=16), r"legacy=False .* needs embedding_size \(16\) == hidden_size"),
    ("deberta-v2", dict(conv_kernel_size=4), r"conv_kernel_size \(4\) must be odd"),
    ("deberta-v2", dict(attention_head_size=4), r"attention_head_size \(4\) x num_attention_heads \(4\) must equal"),
    ("deberta-v2", dict(norm_rel_ebd="batch_norm"), r"norm_rel_ebd: unknown entries \['batch_norm'\]"),
])
def test_configs_transformers_cannot_run_are_refused(model_type, change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        REGISTRY[model_type].from_config(dict(TINY, model_type=model_type, **change))


@pytest.mark.parametrize(("model_type", "change", "pattern"), [
    ("mobilebert", dict(key_query_shared_bottleneck=False), r"hidden_size \(32\) states to query/key layers of "
                                                             r"intra_bottleneck_size \(24\) inputs"),
    ("mobilebert", dict(intra_bottleneck_size=30), r"intra_bottleneck_size \(30\) must be a multiple of num_attention_heads"),
    ("mobilebert", dict(normalization_type="batch_norm"), r"normalization_type: Input should be 'no_norm' or 'layer_norm'"),
    ("squeezebert", dict(embedding_size=16), r"embedding_size \(16\) must equal hidden_size \(32\)"),
    ("squeezebert", dict(k_groups=3), r"hidden_size \(32\) must be a multiple of k_groups \(3\)"),
    ("squeezebert", dict(output_groups=8), r"intermediate_size \(36\) must be a multiple of output_groups \(8\)"),
])
def test_mobilebert_squeezebert_refuse_what_transformers_cannot_run(model_type, change, pattern):
    base = MOBILEBERT if model_type == "mobilebert" else SQUEEZEBERT
    with pytest.raises(ConfigError, match=pattern):
        REGISTRY[model_type].from_config(dict(base, model_type=model_type, **change))


def test_mobilebert_mlm_needs_embedding_size_within_hidden_size():
    arch = REGISTRY["mobilebert"].from_config(dict(MOBILEBERT, model_type="mobilebert", embedding_size=48))
    assert arch.build(None).outputs  # the bare model is fine with wide embeddings
    with pytest.raises(ConfigError, match=r"MLM head needs embedding_size \(48\) <= hidden_size \(32\)"):
        arch.build("masked-lm")


@pytest.mark.parametrize(("cls", "config", "task"), [
    ("MobileBert", MOBILEBERT, "pretraining"),
    ("MobileBert", dict(MOBILEBERT, embedding_size=32, trigram_input=False, use_bottleneck_attention=True), None),
    ("SqueezeBert", dict(SQUEEZEBERT, q_groups=2, v_groups=8, post_attention_groups=2), "masked-lm"),
])
def test_mobilebert_squeezebert_save_every_tensor(hf_checkpoint, tmp_path, cls, config, task):
    """The tensors transformers builds but does not use (MobileBERT's unused embedding projection and
    shared bottleneck, SqueezeBERT's pooler under every head) and grouped conv weights are saved back."""
    from safetensors import safe_open

    test_save_round_trip(hf_checkpoint, tmp_path, cls, config, task)
    path, _ = hf_checkpoint(hf_class(cls, task), seed=1, **config_for(config, task))
    keys = [set(safe_open(p / "model.safetensors", "np").keys()) for p in (path, tmp_path)]
    assert keys[0] == keys[1]


def test_mobilebert_trigram_is_not_bucketed(hf_checkpoint, tmp_path):
    """A trigram reads the next token, so padding appended by bucketing would change the last real token
    (here the padding embedding is not zero, as it is when transformers initialises it)."""
    import transformers

    hf = transformers.MobileBertModel.from_pretrained(hf_checkpoint("MobileBertModel", **MOBILEBERT)[0]).eval()
    with torch.no_grad():
        hf.embeddings.word_embeddings.weight[0] = 1.0
    hf.save_pretrained(tmp_path)
    model = isoform.Model.load(tmp_path)
    model.bucket = 16
    inputs = make_inputs(MOBILEBERT, None, seq=9)
    assert record_model(model, max_diff(model(**inputs).numpy(), reference(hf, inputs))) <= TOL


@pytest.mark.parametrize("backend_name", ["numpy", "torch"])
def test_deberta_v3_runs_past_max_position_embeddings(hf_checkpoint, backend_name):
    """Without an absolute position table (``position_biased_input=False``) any length works, as in
    transformers; distances past ``max_relative_positions`` share the last bucket."""
    path, hf = hf_checkpoint("DebertaV2Model", **DEBERTA_V3)
    seq = DEBERTA_V3["max_position_embeddings"] + 13
    inputs = make_inputs(DEBERTA_V3, None, seq=seq)
    model = isoform.Model.load(path, backend=backend_name)
    assert record_model(model, max_diff(model(**inputs).numpy(), reference(hf, inputs))) <= TOL
