"""transformers' introspection arguments on every backend: ``output_hidden_states=True`` and
``output_attentions=True`` (the tuples of every layer boundary and attention probabilities, padded keys
included), ``inputs_embeds`` instead of ``input_ids`` and explicit ``position_ids``, all run by graph
variants (`isoform.ir.rewrite`). Expected values are computed by transformers here, never pasted."""

from __future__ import annotations

import numpy as np
import pytest
from test_audio import TINY as WAV2VEC2
from test_audio import XLSR
from test_audio import make_inputs as audio_inputs
from test_bert_family import (
    ALBERT,
    CONVBERT,
    DEBERTA,
    DEBERTA_V3,
    DISTIL,
    ELECTRA,
    FUNNEL,
    MOBILEBERT,
    MPNET,
    ROBERTA,
    ROFORMER,
    SQUEEZEBERT,
)
from test_bert_family import TINY as BERT
from test_bert_family import make_inputs as text_inputs
from test_decoders import GPT2, LLAMA
from test_decoders import batch as causal_batch
from test_seq2seq import BART, T5
from test_seq2seq import make_inputs as seq2seq_inputs
from test_speech2text import S2T
from test_speech2text import make_inputs as s2t_inputs
from test_vision import CLIP, CLIP_TEXT
from test_vision import TINY as VIT
from test_vision import make_inputs as vision_inputs

import isoform
from isoform import backends
from isoform.errors import GraphError, InputError
from isoform.ir import Graph, decompose
from isoform.ir.rewrite import as_input, expose, taps
from isoform.model import architecture_for

torch = pytest.importorskip("torch")

TOL = 1e-4


def causal_inputs(config: dict) -> dict[str, np.ndarray]:
    ids, mask = causal_batch()
    return {"input_ids": ids, "attention_mask": mask}


# case id -> (transformers class, config, inputs from config); text rows 1 are padded after 7 tokens
CASES = {
    "bert": ("BertModel", BERT, lambda c: text_inputs(c, None)),
    "roberta": ("RobertaModel", ROBERTA, lambda c: text_inputs(c, None)),
    "megatron-bert": ("MegatronBertModel", BERT, lambda c: text_inputs(c, None)),  # a norm after the last layer
    "distilbert": ("DistilBertModel", DISTIL, lambda c: text_inputs(c, None)),
    "gpt2": ("GPT2Model", GPT2, causal_inputs),
    "llama-gqa": ("LlamaModel", LLAMA, causal_inputs),
    "t5": ("T5Model", T5, seq2seq_inputs),
    "bart": ("BartModel", BART, seq2seq_inputs),
    "vit": ("ViTModel", VIT, lambda c: vision_inputs(c, None)),
    "clip": ("CLIPModel", CLIP, lambda c: vision_inputs(c, None, cls="CLIPModel")),  # text_/vision_hidden_states ...
    "clip-text": ("CLIPTextModel", CLIP_TEXT, lambda c: vision_inputs(c, None, cls="CLIPTextModel")),
    "wav2vec2": ("Wav2Vec2Model", WAV2VEC2, lambda c: audio_inputs()),
    "wav2vec2-stable-layer-norm": ("Wav2Vec2Model", XLSR, lambda c: audio_inputs()),
    "roformer": ("RoFormerModel", ROFORMER, lambda c: text_inputs(c, None)),
    "mobilebert": ("MobileBertModel", MOBILEBERT, lambda c: text_inputs(c, None)),
    "deberta": ("DebertaModel", DEBERTA, lambda c: text_inputs(c, None)),  # disentangled scores: a float mask
    "deberta-v2": ("DebertaV2Model", DEBERTA_V3, lambda c: text_inputs(c, None)),
    "funnel": ("FunnelModel", FUNNEL, lambda c: text_inputs(c, None)),  # pooled blocks: shorter hidden states
    "squeezebert": ("SqueezeBertModel", SQUEEZEBERT, lambda c: text_inputs(c, None)),
    "convbert": ("ConvBertModel", CONVBERT, lambda c: text_inputs(c, None)),  # the attention half of its heads
    "speech2text": ("Speech2TextModel", S2T, lambda c: s2t_inputs(c)),
}
# cases whose output_attentions=True is refused (no attention taps): Funnel's relative attention is a softmax
# of its own, not an `attention` node; SqueezeBERT's transformers returns the masked scores before the softmax
NO_ATTENTION_TAPS = ("funnel", "funnel-base", "squeezebert")
# the same taps in other families' code paths, on the reference backend only (test time)
MORE = {
    "albert-groups": ("AlbertModel", dict(ALBERT, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2),
                      lambda c: text_inputs(c, None)),
    "electra": ("ElectraModel", ELECTRA, lambda c: text_inputs(c, None)),
    "mpnet": ("MPNetModel", MPNET, lambda c: text_inputs(c, None)),
    "mistral-window": ("MistralModel", dict(LLAMA, num_key_value_heads=1, sliding_window=4, pad_token_id=0),
                       causal_inputs),
    "mbart": ("MBartModel", BART, seq2seq_inputs),
    "roformer-decoder": ("RoFormerModel", dict(ROFORMER, is_decoder=True, rotary_value=True),
                         lambda c: text_inputs(c, None)),
    "deberta-v2-conv": ("DebertaV2Model", dict(DEBERTA, conv_kernel_size=3, conv_groups=2, embedding_size=16,
                                               type_vocab_size=2, pos_att_type=["c2p"]), lambda c: text_inputs(c, None)),
    "funnel-base": ("FunnelBaseModel", dict(FUNNEL, block_sizes=[2, 1], block_repeats=[2, 3], pool_q_only=False),
                    lambda c: text_inputs(c, None)),
}
_EAGER: dict[str, object] = {}


def eager(hf_checkpoint, cls: str, config: dict):
    """The checkpoint's directory and its transformers model with eager attention (the one that returns
    attention probabilities), loaded once per session."""
    path, hf = hf_checkpoint(cls, **config)
    if str(path) not in _EAGER:
        _EAGER[str(path)] = type(hf).from_pretrained(path, attn_implementation="eager").eval()
    return path, _EAGER[str(path)]


def run_hf(model, **inputs) -> dict[str, object]:
    """transformers' outputs as NumPy (tuples as tuples; CLIPModel's ``text_model_output.hidden_states`` as
    ``text_hidden_states``, ...), without empty tuples (BERT's ``cross_attentions``)."""
    with torch.no_grad():
        out = dict(model(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}))
    for tower in ("text", "vision"):
        nested = out.pop(f"{tower}_model_output", None) or {}
        out.update({f"{tower}_{k}": v for k, v in nested.items() if isinstance(v, tuple)})
    return {k: tuple(t.numpy() for t in v) if isinstance(v, tuple) else v.numpy()
            for k, v in out.items() if isinstance(v, torch.Tensor) or (isinstance(v, tuple) and v)}


def assert_close(got: dict, want: dict, keys) -> None:
    for k in keys:
        g, w = (got[k], want[k]) if isinstance(want[k], tuple) else ((got[k],), (want[k],))
        assert len(g) == len(w), f"{k}: {len(g)} entries, transformers has {len(w)}"
        for i, (a, b) in enumerate(zip(g, w)):
            assert a.shape == b.shape, f"{k}[{i}]: {a.shape} vs {b.shape}"
            assert np.abs(a - b).max() <= TOL, f"{k}[{i}]: max diff {np.abs(a - b).max()}"


@pytest.mark.parametrize("case", list(CASES))
def test_hidden_states_and_attentions(hf_checkpoint, backend, case):
    check_outputs(hf_checkpoint, backend, case, *CASES[case])


@pytest.mark.parametrize("case", list(MORE))
def test_more_families_on_numpy(hf_checkpoint, case):
    check_outputs(hf_checkpoint, "numpy", case, *MORE[case])


def check_outputs(hf_checkpoint, backend: str, case: str, cls: str, config: dict, make) -> None:
    path, hf = eager(hf_checkpoint, cls, config)
    inputs = make(config)
    tapped = case not in NO_ATTENTION_TAPS
    want = run_hf(hf, **inputs, output_hidden_states=True, output_attentions=tapped)
    kinds = sorted(k for k in want if k.endswith(("hidden_states", "attentions")))
    model = isoform.Model.load(path, backend=backend)
    got = model(**inputs, output_hidden_states=True, output_attentions=tapped).numpy()
    assert sorted(k for k in got if k.endswith(("hidden_states", "attentions"))) == kinds
    if case != "clip":  # (CLIPModel nests each tower's tuples in its own output)
        assert list(got) == [k for k in want if k in got]  # transformers' order
    assert_close(got, want, kinds)
    assert_close(got, run_hf(hf, **inputs), [k for k in got if k not in kinds])  # the other outputs unchanged
    if not tapped:
        refused = f"output_attentions=True is not supported by model_type '{model.arch.model_type}'"
        with pytest.raises(InputError, match=refused):
            model(**inputs, output_attentions=True)
    elif "input_ids" in inputs:  # padded keys get probability 0 from every real query
        pad = inputs["attention_mask"] == 0
        seen = ~pad[:, :, None] & pad[:, None, :]  # [batch, query, key]
        attentions = next(got[k] for k in ("attentions", "encoder_attentions", "text_attentions") if k in got)
        assert seen.any() and all(np.all(a.transpose(0, 2, 3, 1)[seen] == 0) for a in attentions)


@pytest.mark.parametrize("case", ["bert", "gpt2", "llama-gqa", "t5"])
def test_inputs_embeds(hf_checkpoint, backend, case):
    cls, config, make = CASES[case]
    path, hf = eager(hf_checkpoint, cls, config)
    inputs = make(config)
    embed = hf.get_input_embeddings()
    with torch.no_grad():
        embeds = {"inputs_embeds": embed(torch.from_numpy(inputs.pop("input_ids"))).numpy()}
        if case == "t5":  # both stacks
            embeds["decoder_inputs_embeds"] = embed(torch.from_numpy(inputs.pop("decoder_input_ids"))).numpy()
    inputs.pop("token_type_ids", None)  # default zeros, shaped like the embeddings' batch and seq
    want = run_hf(hf, **inputs, **embeds, output_hidden_states=True)
    model = isoform.Model.load(path, backend=backend)
    got = model(**inputs, **embeds, output_hidden_states=True).numpy()
    assert set(got) == set(want)
    assert_close(got, want, want)


@pytest.mark.parametrize("case", ["roberta", "gpt2", "llama-gqa"])
def test_position_ids(hf_checkpoint, backend, case):
    cls, config, make = CASES[case]
    path, hf = eager(hf_checkpoint, cls, config)
    inputs = make(config)
    first = 2 if case == "roberta" else 0  # RoBERTa's table starts after its padding row
    positions = first + np.random.default_rng(3).permutation(30)[:inputs["input_ids"].shape[1]]
    inputs["position_ids"] = np.stack([positions, positions[::-1]])
    want = run_hf(hf, **inputs)
    model = isoform.Model.load(path, backend=backend)
    got = model(**inputs).numpy()
    assert set(got) == set(want)
    assert_close(got, want, want)
    default = model(**{k: v for k, v in inputs.items() if k != "position_ids"}).numpy()
    assert np.abs(default["last_hidden_state"] - got["last_hidden_state"]).max() > 1e-2  # the positions were used


def test_bad_requests(hf_checkpoint):
    path, _ = eager(hf_checkpoint, "BertModel", BERT)
    model = isoform.Model.load(path)
    inputs = text_inputs(BERT, None)
    with pytest.raises(InputError, match="output_attentions must be True or False"):
        model(**inputs, output_attentions="yes")
    with pytest.raises(InputError, match=r"position_ids holds 40 .* outside \[0, 40\)"):
        model(**inputs, position_ids=np.full_like(inputs["input_ids"], 40))
    with pytest.raises(InputError, match="inputs_embeds must have shape"):
        model(inputs_embeds=np.zeros((2, 11), np.float32))
    off = model(**inputs, output_hidden_states=False, output_attentions=False, position_ids=None).numpy()
    assert sorted(off) == ["last_hidden_state", "pooler_output"]
    assert np.array_equal(off["last_hidden_state"], model(**inputs).numpy()["last_hidden_state"])
    path, _ = eager(hf_checkpoint, "RobertaModel", ROBERTA)
    with pytest.raises(InputError, match=r"inputs_embeds cannot replace input_ids .* beyond the embedding lookup"):
        isoform.Model.load(path)(inputs_embeds=np.zeros((2, 11, 32), np.float32))


def test_taps_survive_json_and_rewrites():
    graph = architecture_for({"model_type": "bert", **BERT}).build("masked-lm")
    assert {k: len(v) for k, v in taps(graph).items()} == {"inputs_embeds": 1, "position_ids": 1, "hidden_states": 3,
                                                           "attentions": 2}
    graph = Graph.from_json(graph.to_json())
    embedded = as_input(graph, "inputs_embeds")
    assert [v.name for v in embedded.inputs] == ["inputs_embeds", "attention_mask", "token_type_ids"]
    assert embedded.values["inputs_embeds"].shape == ("batch", "seq", 32)
    assert "inputs_embeds" not in taps(embedded) and len(embedded.nodes) < len(graph.nodes)
    exposed = expose(embedded, ["hidden_states", "attentions"])
    assert list(exposed.outputs)[1:] == [*(f"hidden_states.{i}" for i in range(3)), "attentions.0", "attentions.1"]
    assert exposed.values[exposed.outputs["attentions.0"]].shape == ("batch", 4, "seq", "seq")
    assert Graph.from_json(exposed.to_json()) == exposed
    decomposed = decompose(graph, keep=lambda op: False)  # values renumbered, taps follow them
    rng = np.random.default_rng(0)
    params = {p.name: rng.normal(size=p.shape).astype(np.float32) for p in graph.params}
    ids = rng.integers(0, 99, (2, 5))
    runs = [backends.get("numpy").compile(expose(g, ["hidden_states"]), params)(
        input_ids=ids, attention_mask=np.ones_like(ids), token_type_ids=np.zeros_like(ids)) for g in (graph, decomposed)]
    assert all(np.allclose(runs[0][f"hidden_states.{i}"], runs[1][f"hidden_states.{i}"], atol=1e-5) for i in range(3))
    with pytest.raises(GraphError, match=r"tap attentions\[0\] .* is not the output of an attention node"):
        expose(decomposed, ["attentions"])
    with pytest.raises(GraphError, match="has no 'cross_attentions' taps"):
        expose(graph, ["cross_attentions"])
    with pytest.raises(GraphError, match="taps 3 values as 'hidden_states', not one"):
        as_input(graph, "hidden_states")
    with pytest.raises(GraphError, match="unknown tap kind 'logits'"):
        isoform.ir.GraphBuilder("g").tap("logits", isoform.ir.GraphBuilder("g").input("x", [1], "f32"))
