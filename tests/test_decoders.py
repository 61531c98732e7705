"""Decoder-only LMs (GPT, GPT-2, GPT-Neo, Llama, Mistral, Qwen2) against transformers on every backend:
the task graphs (bare model, causal-lm, sequence-classification) and the KV-cached decoding of
`isoform.generation.Decoder` (prefill + steps on a left-padded batch of uneven lengths). Expected
outputs are computed by transformers here, never pasted."""

from __future__ import annotations

import json

import numpy as np
import pytest

import isoform
from isoform.architectures.causal import CausalLM
from isoform.errors import ConfigError, InputError
from isoform.testing.coverage import check_task_coverage
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")

TOL = 1e-4
VOCAB = 99
GPT2 = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64)
GPT = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64)
NEO = dict(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=64,
           attention_types=[[["global", "local"], 1]], window_size=3)
LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
ROPE = {"llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 16},
        "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": 16},
        "longrope": {"rope_type": "longrope", "long_factor": [1.0, 2.0, 3.0, 4.0], "short_factor": [1.0, 1.5, 1.2, 1.1],
                     "original_max_position_embeddings": 8},
        "proportional": {"rope_type": "proportional", "partial_rotary_factor": 0.5, "factor": 2.0}}
BASE, LM, CLS = None, "causal-lm", "sequence-classification"
HEADS = {BASE: "Model", LM: "ForCausalLM", CLS: "ForSequenceClassification"}
LM_HEAD = {"GPT2": "LMHeadModel", "OpenAIGPT": "LMHeadModel"}

# (case id, transformers class prefix, config, tasks)
FAMILIES = [
    ("gpt2", "GPT2", GPT2, [BASE, LM, CLS]),
    ("gpt2-layer-scaled-untied-relu", "GPT2", dict(GPT2, scale_attn_by_inverse_layer_idx=True, activation_function="relu",
                                                   n_inner=40, tie_word_embeddings=False), [LM]),
    ("gpt2-unscaled-upcast", "GPT2", dict(GPT2, scale_attn_weights=False, reorder_and_upcast_attn=True,
                                          activation_function="gelu"), [LM]),
    ("gpt2-pad", "GPT2", dict(GPT2, pad_token_id=0), [CLS]),
    ("openai-gpt", "OpenAIGPT", GPT, [BASE, LM, CLS]),
    ("openai-gpt-relu-pad", "OpenAIGPT", dict(GPT, afn="relu", pad_token_id=0), [LM, CLS]),
    ("gpt-neo", "GPTNeo", NEO, [BASE, LM, CLS]),
    ("gpt-neo-local-first-untied", "GPTNeo", dict(NEO, attention_types=[[["local", "global"], 1]], window_size=2,
                                                   activation_function="gelu_fast", tie_word_embeddings=False), [LM]),
    ("llama", "Llama", LLAMA, [BASE, LM, CLS]),
    ("llama-mha-tied-bias-headdim-linear", "Llama",
     dict(LLAMA, num_key_value_heads=4, tie_word_embeddings=True, attention_bias=True, mlp_bias=True, head_dim=16,
          hidden_act="gelu_new", rope_scaling={"rope_type": "linear", "factor": 2.0}), [LM]),
    ("llama-mqa-dynamic", "Llama", dict(LLAMA, num_key_value_heads=1, max_position_embeddings=8,
                                         rope_scaling={"rope_type": "dynamic", "factor": 4.0}), [LM]),
    *[(f"llama-{kind}", "Llama", dict(LLAMA, rope_scaling=rope, rope_theta=500.0), [LM]) for kind, rope in ROPE.items()],
    ("mistral-window", "Mistral", dict(LLAMA, num_key_value_heads=1, sliding_window=4, pad_token_id=0), [BASE, LM, CLS]),
    ("mistral-no-window", "Mistral", dict(LLAMA, sliding_window=None), [LM]),
    ("qwen2", "Qwen2", LLAMA, [BASE, LM, CLS]),
    ("qwen2-window-layers", "Qwen2", dict(LLAMA, use_sliding_window=True, sliding_window=3, max_window_layers=1,
                                          tie_word_embeddings=True), [LM]),
]
CASES = [pytest.param(fam, cls, cfg, task, id=f"{fam}-{task or 'base'}") for fam, cls, cfg, tasks in FAMILIES
         for task in tasks]
DECODE_CASES = [pytest.param(fam, cls, cfg, id=fam) for fam, cls, cfg, tasks in FAMILIES if LM in tasks]


def hf_class(prefix: str, task: str | None) -> str:
    return prefix + (LM_HEAD.get(prefix, HEADS[task]) if task == LM else HEADS[task])


def run_hf(model, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


def batch(seed: int = 0, seq: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Two rows of random ids (never 0, the pad id of the `-pad` cases); row 1 right-padded after 7 tokens."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (2, seq))
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    ids[mask == 0] = 0
    return ids, mask


@pytest.mark.parametrize(("family", "cls", "config", "task"), CASES)
def test_parity(hf_checkpoint, backend, family, cls, config, task):
    path, hf = hf_checkpoint(hf_class(cls, task), **config)
    ids, mask = batch()
    if task == CLS and config.get("pad_token_id") is None:
        ids, mask = ids[:1], mask[:1]  # transformers pools the last token: one row at a time
    want = run_hf(hf, input_ids=ids, attention_mask=mask)
    model = isoform.Model.load(path, backend=backend, task=task)
    got = model(input_ids=ids, attention_mask=mask).numpy()
    assert set(got) == set(want)
    diffs = {}
    for name, value in got.items():
        assert value.shape == want[name].shape, name
        # per-token outputs at padding are unspecified (transformers' SDPA zeroes fully masked rows)
        real = mask.astype(bool) if value.ndim == 3 else slice(None)
        diffs[name] = float(np.abs(value[real] - want[name][real]).max())
    record_model(model, max(diffs.values()))
    for name, diff in diffs.items():
        assert diff <= TOL, name


def left_padded_prompts(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three prompts of 7, 4 and 6 tokens left-padded to 7, and 5 tokens to append to each."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (3, 7))
    mask = np.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :1] = 0
    ids[mask == 0] = 0
    return ids, mask, rng.integers(1, VOCAB, (3, 5))


def generate_positions(mask: np.ndarray) -> np.ndarray:
    return np.where(mask == 0, 0, np.cumsum(mask, axis=1) - 1)  # transformers' generate


def reference_steps(hf, ids: np.ndarray, mask: np.ndarray, new: np.ndarray, incremental: bool) -> np.ndarray:
    """transformers' last-position logits after the prompt and after each new token [batch, 1 + steps, vocab]:
    from one full-sequence forward, or (``incremental``) fed token by token through its own cache."""
    full, full_mask = np.concatenate([ids, new], 1), np.concatenate([mask, np.ones_like(new)], 1)
    positions = generate_positions(full_mask)
    seq = ids.shape[1]
    if not incremental:
        logits = run_hf(hf, input_ids=full, attention_mask=full_mask, position_ids=positions)["logits"]
        return logits[:, seq - 1:seq + new.shape[1]]
    out, steps = None, []
    for end in range(seq, full.shape[1] + 1):
        start = 0 if out is None else end - 1
        with torch.no_grad():
            out = hf(input_ids=torch.from_numpy(full[:, start:end]), attention_mask=torch.from_numpy(full_mask[:, :end]),
                     position_ids=torch.from_numpy(positions[:, start:end]), use_cache=True,
                     cache=None if out is None else out.cache)
        steps.append(out.logits[:, -1].numpy())
    return np.stack(steps, 1)


@pytest.mark.parametrize(("family", "cls", "config"), DECODE_CASES)
def test_cached_decode_matches_full_sequence(hf_checkpoint, backend, family, cls, config):
    path, hf = hf_checkpoint(hf_class(cls, LM), **config)
    ids, mask, new = left_padded_prompts()
    # dynamic NTK and longrope pick frequencies from each call's longest position: then transformers'
    # own cached decode is the reference (its full-sequence forward uses the final length's everywhere)
    want = reference_steps(hf, ids, mask, new, incremental=family.endswith(("dynamic", "longrope")))
    model = isoform.Model.load(path, backend=backend, task=LM)
    decoder = model.decoder()
    got = [decoder.prefill(ids, mask, max_new_tokens=new.shape[1])]
    got += [decoder.step(new[:, j]) for j in range(new.shape[1])]
    assert all(g.dtype == np.float32 and g.shape == (3, VOCAB) for g in got)
    assert record_model(model, float(np.abs(np.stack(got, 1) - want).max())) <= TOL


@pytest.mark.parametrize("family", ["mistral-window", "llama-mqa-dynamic", "gpt-neo-local-first-untied", "qwen2"])
def test_greedy_decoding_matches_transformers_generate(hf_checkpoint, backend, family):
    """Token-identical to ``generate``: sliding windows (Mistral) and local attention (GPT-Neo) across
    the cache, and dynamic NTK past max_position_embeddings (7 + 12 > 8), where each step rescales RoPE.
    No eos (a checkpoint's default one would be suppressed by min_new_tokens, or lie outside the tiny
    vocab), pad 0: ``generate`` is then the plain argmax this loop takes."""
    _, cls, config, _ = next(f for f in FAMILIES if f[0] == family)
    path, hf = hf_checkpoint(hf_class(cls, LM), **config)
    ids, mask, _ = left_padded_prompts(seed=3)
    steps = 12
    with torch.no_grad():
        want = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=steps,
                           do_sample=False, eos_token_id=None, pad_token_id=0).numpy()[:, ids.shape[1]:]
    assert want.shape[1] == steps
    decoder = isoform.Model.load(path, backend=backend, task=LM).decoder()
    tokens = [decoder.prefill(ids, mask, max_new_tokens=steps).argmax(-1)]
    while len(tokens) < steps:
        tokens.append(decoder.step(tokens[-1]).argmax(-1))
    np.testing.assert_array_equal(np.stack(tokens, 1), want)


@pytest.mark.parametrize("family", ["gpt2", "mistral-window"])
def test_same_size_reorder_across_rows_matches_transformers(hf_checkpoint, backend, family):
    """Beam search at a fixed batch size moves rows between prompts: after ``reorder`` with a permutation
    ([2, 0, 1]) and with a duplicating index ([1, 1, 0]), the next step gives the logits of transformers'
    uncached forward on the correspondingly permuted full sequences."""
    _, cls, config, _ = next(f for f in FAMILIES if f[0] == family)
    path, hf = hf_checkpoint(hf_class(cls, LM), **config)
    ids, mask, new = left_padded_prompts(seed=2)
    model = isoform.Model.load(path, backend=backend, task=LM)
    decoder = model.decoder()
    decoder.prefill(ids, mask, max_new_tokens=3)
    decoder.step(new[:, 0])
    rows = np.arange(3)  # the prompt each decoder row continues
    for step, index in enumerate(([2, 0, 1], [1, 1, 0]), start=1):
        decoder.reorder(np.array(index))
        rows = rows[index]
        got = decoder.step(new[rows, step])
        assert decoder.batch_size == 3
        want = reference_steps(hf, ids[rows], mask[rows], new[rows, :step + 1], incremental=False)[:, -1]
        assert record_model(model, float(np.abs(got - want).max())) <= TOL, f"after reorder({index})"


@pytest.mark.parametrize("family", ["gpt2", "mistral-window"])
def test_reorder_expands_and_permutes_rows(hf_checkpoint, backend, family):
    _, cls, config, _ = next(f for f in FAMILIES if f[0] == family)
    path, hf = hf_checkpoint(hf_class(cls, LM), **config)
    ids, mask, new = left_padded_prompts(seed=2)
    want = reference_steps(hf, ids, mask, new, incremental=False)
    model = isoform.Model.load(path, backend=backend, task=LM)
    decoder = model.decoder()
    decoder.prefill(ids, mask, max_new_tokens=3)
    decoder.step(new[:, 0])
    rows = np.array([2, 2, 0, 1, 0])  # beam-style: expand, duplicate, reorder
    decoder.reorder(rows)
    got = decoder.step(new[rows, 1])
    assert decoder.batch_size == 5
    assert record_model(model, float(np.abs(got - want[rows, 2]).max())) <= TOL
    decoder.reorder(np.array([4]))
    assert record_model(model, float(np.abs(decoder.step(new[[0], 2]) - want[[0], 3]).max())) <= TOL


def test_cases_cover_every_declared_task():
    """Each (model_type, task) a decoder-only architecture declares has a parity case, built from the
    transformers class the architecture names for it: a new architecture or head fails here until tested."""
    check_task_coverage(CausalLM, {hf_class(cls, task) for _, cls, _, tasks in FAMILIES for task in tasks})


def test_bucketed_prefill_reuses_compiled_graphs(hf_checkpoint):
    pytest.importorskip("jax")
    path, hf = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    model = isoform.Model.load(path, backend="jax", task=LM)
    decoder = model.decoder()
    for seq in (3, 5, 9):  # one prompt bucket (16) and one cache bucket (64)
        ids, mask = batch(seed=seq, seq=seq)
        want = run_hf(hf, input_ids=ids[:1], attention_mask=mask[:1])["logits"][:, -1]
        assert record_model(model, float(np.abs(decoder.prefill(ids[:1], mask[:1], max_new_tokens=4) - want).max())) <= TOL
        decoder.step(np.array([1]))
    assert decoder._program.compile_count == 2  # the prefill shape and the step shape


def test_decoder_shares_the_model_weights(hf_checkpoint):
    path, _ = hf_checkpoint("LlamaForCausalLM", **LLAMA)
    model = isoform.Model.load(path, backend="torch", task=LM)
    decoder = model.decoder()
    ours = model.program.module.state_dict()
    theirs = decoder._program.module.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k].data_ptr() == theirs[k].data_ptr() for k in ours)


def test_bad_inputs(hf_checkpoint):
    path, _ = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    decoder = isoform.Model.load(path, task=LM).decoder()
    ids, mask = batch(seq=60)
    with pytest.raises(InputError, match=r"60 tokens and max_new_tokens is 5.*context length 64"):
        decoder.prefill(ids, mask, max_new_tokens=5)
    with pytest.raises(InputError, match="step called before prefill"):
        decoder.step(np.array([1, 2]))
    decoder.prefill(ids[:, :10], mask[:, :10], max_new_tokens=1)
    with pytest.raises(InputError, match="shape \\(2,\\)"):
        decoder.step(np.array([1, 2, 3]))
    with pytest.raises(InputError, match="vocab_size"):
        decoder.step(np.array([1, VOCAB]))
    decoder.step(np.array([1, 2]))
    with pytest.raises(InputError, match="cache is full"):
        decoder.step(np.array([1, 2]))
    with pytest.raises(InputError, match=r"\[0, 2\)"):
        decoder.reorder(np.array([0, 2]))
    with pytest.raises(InputError, match="attention_mask has shape"):
        decoder.prefill(ids[:, :10], mask[:, :9], max_new_tokens=1)


def test_decoder_needs_a_causal_lm(hf_checkpoint):
    path, _ = hf_checkpoint("GPT2Model", **GPT2)
    with pytest.raises(ConfigError, match=r"task='causal-lm'.*task=None"):
        isoform.Model.load(path).decoder()


def test_classification_without_pad_token_takes_one_row(hf_checkpoint):
    path, _ = hf_checkpoint("GPT2ForSequenceClassification", **GPT2)
    ids, mask = batch()
    with pytest.raises(InputError, match="pad_token_id"):
        isoform.Model.load(path, task=CLS)(input_ids=ids, attention_mask=mask)


@pytest.mark.parametrize(("config", "message"), [
    (dict(LLAMA, model_type="llama", rope_scaling={"rope_type": "linear"}), "needs \\['factor'\\]"),
    (dict(LLAMA, model_type="llama", rope_scaling={"rope_type": "ntk-by-parts", "factor": 2.0}),
     "rope_type 'ntk-by-parts' is not supported"),
    (dict(LLAMA, model_type="llama", rope_scaling={"rope_type": "linear", "factor": 2.0, "partial_rotary_factor": 0.5}),
     "rotate 4 of head_dim 8"),
    (dict(LLAMA, model_type="mistral", num_key_value_heads=3), "multiple of num_key_value_heads \\(3\\)"),
    (dict(GPT2, model_type="gpt2", pad_token_id=VOCAB), f"pad_token_id \\({VOCAB}\\) must be < vocab_size"),
    (dict(NEO, model_type="gpt_neo", num_layers=3), "attention_types describe 2 layers, num_layers is 3"),
    (dict(GPT, model_type="openai-gpt", afn="gelu_new"), "afn"),
])
def test_bad_config(tmp_path, config, message):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=message):
        isoform.Model.load(tmp_path, task=LM)


@pytest.mark.parametrize(("family", "task"), [("gpt2", CLS), ("gpt2-layer-scaled-untied-relu", LM), ("openai-gpt", LM),
                                              ("gpt-neo", LM), ("llama-mha-tied-bias-headdim-linear", LM),
                                              ("qwen2", LM)])
def test_save_loads_in_transformers(hf_checkpoint, tmp_path, family, task):
    transformers = pytest.importorskip("transformers")
    _, cls, config, _ = next(f for f in FAMILIES if f[0] == family)
    path, hf = hf_checkpoint(hf_class(cls, task), **config)
    isoform.Model.load(path, task=task).save(tmp_path)
    again = getattr(transformers, hf_class(cls, task)).from_pretrained(tmp_path).eval()
    ids, mask = batch()
    ids, mask = ids[:1], mask[:1]
    want, got = run_hf(hf, input_ids=ids, attention_mask=mask), run_hf(again, input_ids=ids, attention_mask=mask)
    np.testing.assert_array_equal(got["logits"], want["logits"])
