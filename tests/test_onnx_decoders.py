"""Decoder-only LMs (GPT-2, GPT, GPT-Neo local attention, Llama GQA + RoPE, Mistral sliding window,
Qwen2) and encoder-decoders (T5, BART) exported with `Model.export_onnx` to a file, at the default
opset and at opset 18 (where `Attention`, `RMSNormalization` and `Gelu` are decomposed): the file
passes the full ONNX checker, has the documented input/output names and dynamic axes, and a plain
`onnxruntime.InferenceSession` on it matches transformers at two different (batch, seq) shapes.

Tolerance: 1e-4 beyond transformers' own float32 rounding error on the same inputs (its distance
to a float64 copy of the same model). That error is ~1e-6 for most families, but the informative
T5 checkpoint is ill-conditioned enough (logits ~15, no attention scaling) that transformers'
float32 forward is itself up to ~3e-4 away from float64."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import isoform

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from isoform.backends.onnx import default_opset  # noqa: E402

TOL = 1e-4
VOCAB = 99
HIDDEN = 32
LABELS = 3
GPT2 = dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=2, n_head=4, n_positions=64)
GPT = dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=2, n_head=4, n_positions=64)
NEO = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=2, num_heads=4, max_position_embeddings=64,
           attention_types=[[["global", "local"], 1]], window_size=3)
LLAMA = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
MISTRAL = dict(LLAMA, num_key_value_heads=1, sliding_window=4, pad_token_id=0, num_labels=LABELS)
T5 = dict(vocab_size=VOCAB, d_model=HIDDEN, d_kv=12, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=4,
          relative_attention_num_buckets=8, relative_attention_max_distance=20, decoder_start_token_id=0)
BART = dict(vocab_size=VOCAB, d_model=HIDDEN, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=40,
            pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2)
LM, CLS, S2S = "causal-lm", "sequence-classification", "seq2seq-lm"

# (case id, transformers class, config, task, norm the family uses)
FAMILIES = [
    ("gpt2", "GPT2LMHeadModel", GPT2, LM, "layer"),
    ("openai-gpt", "OpenAIGPTLMHeadModel", GPT, LM, "layer"),
    ("gpt-neo-local", "GPTNeoForCausalLM", NEO, LM, "layer"),
    ("llama-gqa-rope", "LlamaForCausalLM", LLAMA, LM, "rms"),
    ("mistral-window", "MistralForCausalLM", MISTRAL, LM, "rms"),
    ("mistral-window-cls", "MistralForSequenceClassification", MISTRAL, CLS, "rms"),
    ("qwen2-base", "Qwen2Model", LLAMA, None, "rms"),
    ("t5", "T5ForConditionalGeneration", T5, S2S, "rms"),
    ("bart", "BartForConditionalGeneration", BART, S2S, "layer"),
]
CASES = [pytest.param(cls, cfg, task, norm, opset, id=f"{fam}-opset{opset or 'default'}")
         for fam, cls, cfg, task, norm in FAMILIES for opset in (None, 18)]
SEQ, TGT = ["batch", "seq"], ["batch", "target"]
#: The documented interface of the task graphs (architectures/causal.py and architectures/seq2seq.py).
INPUTS = {"decoder": {"input_ids": SEQ, "attention_mask": SEQ},
          "seq2seq": {"input_ids": SEQ, "attention_mask": SEQ, "decoder_input_ids": TGT, "decoder_attention_mask": TGT}}
OUTPUTS = {LM: {"logits": [*SEQ, VOCAB]}, None: {"last_hidden_state": [*SEQ, HIDDEN]}, CLS: {"logits": ["batch", LABELS]},
           S2S: {"logits": [*TGT, VOCAB], "encoder_last_hidden_state": [*SEQ, HIDDEN]}}
#: (batch, seq, target): two shapes, the second with more rows, a shorter source and a longer target.
SHAPES = [(2, 11, 6), (3, 5, 9)]


def make_inputs(config: dict, task: str | None, batch: int, seq: int, target: int, seed: int) -> dict[str, np.ndarray]:
    """Random ids avoiding the special ids 0..2; the last row right-padded (its last 2 tokens); the
    seq2seq decoder mask pads the last position of row 0."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, (batch, seq))
    mask = np.ones_like(ids)
    mask[-1, seq - 2:] = 0
    ids[mask == 0] = config.get("pad_token_id") or 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if task == S2S:
        dec_mask = np.ones((batch, target), np.int64)
        dec_mask[0, -1] = 0
        inputs |= {"decoder_input_ids": rng.integers(3, VOCAB, (batch, target)), "decoder_attention_mask": dec_mask}
    return inputs


def run_hf(model, inputs: dict[str, np.ndarray], names) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: out[k].to(torch.float64).numpy() for k in names}


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize(("cls", "config", "task", "norm", "opset"), CASES)
def test_exported_file_matches_transformers(hf_checkpoint, tmp_path, cls, config, task, norm, opset):
    path, hf = hf_checkpoint(cls, **config)
    hf64 = copy.deepcopy(hf).to(torch.float64)  # transformers' own float32 error, measured on a copy
    model = isoform.Model.load(path, task=task)
    out = model.export_onnx(tmp_path / "model.onnx", opset=opset)
    onnx.checker.check_model(str(out), full_check=True)
    proto = onnx.load(out)

    # the documented interface: names, element types and dynamic axes
    want_in, want_out = INPUTS["seq2seq" if task == S2S else "decoder"], OUTPUTS[task]
    assert {i.name: dims(i) for i in proto.graph.input} == want_in
    assert {o.name: dims(o) for o in proto.graph.output} == want_out
    assert [i.name for i in proto.graph.input] == list(want_in) and [o.name for o in proto.graph.output] == list(want_out)
    assert {i.type.tensor_type.elem_type for i in proto.graph.input} == {onnx.TensorProto.INT64}
    assert {o.type.tensor_type.elem_type for o in proto.graph.output} == {onnx.TensorProto.FLOAT}
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["architecture"] == model.arch.model_type and props["task"] == (task or "")

    # lowering choices: native composites at the default opset, decompositions at 18
    ops = {n.op_type for n in proto.graph.node}
    assert proto.opset_import[0].version == (opset or default_opset())
    assert ("Attention" in ops) == (opset is None)
    assert ("RMSNormalization" in ops) == (opset is None and norm == "rms")
    assert ("LayerNormalization" in ops) == (norm == "layer")  # native since opset 17
    assert opset is None or "Gelu" not in ops

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for seed, (batch, seq, target) in enumerate(SHAPES):
        inputs = make_inputs(config, task, batch, seq, target, seed)
        got = dict(zip(names, session.run(None, inputs)))
        want, exact = run_hf(hf, inputs, names), run_hf(hf64, inputs, names)
        for name in names:
            assert got[name].dtype == np.float32 and got[name].shape == want[name].shape, name
            # decoder-only per-token outputs at padding are unspecified (transformers' SDPA zeroes masked rows)
            real = inputs["attention_mask"].astype(bool) if task in (LM, None) else ...
            floor = np.abs(want[name] - exact[name])[real].max()
            diff = np.abs(got[name] - want[name])[real].max()
            assert diff <= TOL + floor, f"{name} at (batch, seq, target) {(batch, seq, target)}: {diff:.2e}"
