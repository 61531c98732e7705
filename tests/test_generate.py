"""`Model.generate` against transformers' `generate` on every backend: greedy (with the repetition
penalty, n-gram blocking, min_new_tokens) and beam search (length_penalty, early_stopping True/False/
"never", num_return_sequences) token for token, on a batch of uneven prompts (given right-padded to
isoform, left-padded to transformers), with an eos token the model does emit; greedy and beam search
for every other decoder-only family; seeded sampling; streaming. Expected tokens are computed by
transformers here, never pasted."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

import isoform

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, PAD, BOS = 99, 0, 1
LENGTHS = (7, 3, 5)
GPT = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64)  # GPT-2 and GPT
NEO = dict(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=64,
           attention_types=[[["global", "local"], 1]], window_size=3)
LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
# informative checkpoints of the GPT families (tied embeddings, noised biases) greedily repeat one token
# whatever the prompt, which a broken cache or mask would still reproduce: untied, with a wider init
# (0.2, more than the informative minimum std, so kept as is) their continuations vary
VARIED = dict(tie_word_embeddings=False, initializer_range=0.2)
# name: (transformers class, config, seed); FULL get every variant and test below, the others greedy + beam
ARCHS = {
    "gpt2": ("GPT2LMHeadModel", dict(GPT, **VARIED), 0),
    "llama": ("LlamaForCausalLM", LLAMA, 0),
    "openai-gpt": ("OpenAIGPTLMHeadModel", dict(GPT, **VARIED), 2),
    "gpt-neo": ("GPTNeoForCausalLM", dict(NEO, **VARIED), 1),
    "mistral-window": ("MistralForCausalLM", dict(LLAMA, num_key_value_heads=1, sliding_window=4), 0),
    "qwen2": ("Qwen2ForCausalLM", LLAMA, 0),
}
FULL = ["gpt2", "llama"]
VARIANTS = {
    "greedy": dict(max_new_tokens=10),
    "greedy-default-length": dict(),  # max_new_tokens from generation_config.json
    "greedy-processors": dict(max_new_tokens=10, repetition_penalty=1.4, no_repeat_ngram_size=2, min_new_tokens=6),
    "beam": dict(max_new_tokens=10, num_beams=3),
    "beam-early-stopping": dict(max_new_tokens=10, num_beams=3, early_stopping=True, length_penalty=0.5,
                                num_return_sequences=2),
    "beam-never": dict(max_new_tokens=10, num_beams=3, early_stopping="never", length_penalty=2.0,
                       num_return_sequences=3),
    "beam-no-eos": dict(max_new_tokens=8, num_beams=2, eos_token_id=None),
}


def prompts(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three prompts of uneven lengths, RIGHT-padded (isoform left-pads them itself)."""
    rng = np.random.default_rng(seed)
    ids = np.full((len(LENGTHS), max(LENGTHS)), PAD, np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(LENGTHS):
        ids[row, :n] = rng.integers(3, VOCAB, n)
        mask[row, :n] = 1
    return ids, mask


def left_padded(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out, out_mask = np.full_like(ids, PAD), np.zeros_like(mask)
    for row, n in enumerate(mask.sum(1)):
        out[row, -n:], out_mask[row, -n:] = ids[row, :n], 1
    return out, out_mask


def hf_generate(hf, ids: np.ndarray, mask: np.ndarray, **options) -> np.ndarray:
    ids, mask = left_padded(ids, mask)
    with torch.no_grad():
        return hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **options).numpy()


def pick_eos(tokens: np.ndarray) -> int:
    """A token the second prompt emits early (not first) on which the rows of ``tokens`` [rows, steps]
    (free greedy continuations) stop at different steps: some row ends with eos, then pads."""
    def end(row: np.ndarray, token: int) -> int:
        hits = np.flatnonzero(row == token)
        return int(hits[0]) if hits.size else len(row)

    for token in tokens[1, 1:]:
        if token != PAD and len({end(row, token) for row in tokens}) > 1:
            return int(token)
    raise AssertionError(f"no token ends the rows at different steps: {tokens.tolist()}")


@pytest.fixture(scope="module")
def prepared(hf_checkpoint, tmp_path_factory):
    """name -> (path, model): the session checkpoint of ``ARCHS[name]`` copied to a directory of its own,
    whose generation_config.json sets pad/bos, max_new_tokens=6 and, as eos, a token the model emits early
    for the second prompt (so eos handling is exercised); the model is transformers' reloaded from that
    copy (the shared checkpoint and model are never written)."""
    made: dict[str, tuple] = {}

    def make(name: str):
        if name not in made:
            cls, config, seed = ARCHS[name]
            source, shared = hf_checkpoint(cls, seed=seed, pad_token_id=PAD, bos_token_id=BOS, **config)
            path = tmp_path_factory.mktemp(f"generate-{name}")
            shutil.copytree(source, path, dirs_exist_ok=True)
            ids, mask = prompts()
            free = hf_generate(shared, ids, mask, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=PAD)
            generation = copy.deepcopy(shared.generation_config)
            generation.update(eos_token_id=pick_eos(free[:, max(LENGTHS):]), pad_token_id=PAD, bos_token_id=BOS,
                              max_new_tokens=6)
            generation.save_pretrained(path)
            made[name] = path, getattr(transformers, cls).from_pretrained(path).eval()
        return made[name]

    return make


@pytest.fixture(scope="module", params=FULL)
def checkpoint(request, prepared):
    return prepared(request.param)


@pytest.fixture(scope="module")
def expected(checkpoint):
    _, hf = checkpoint
    ids, mask = prompts()
    return {name: hf_generate(hf, ids, mask, do_sample=False, **options) for name, options in VARIANTS.items()}


def load(path, backend: str) -> isoform.Model:
    return isoform.Model.load(path, backend=backend, task="causal-lm")


def test_generation_config_json_is_read(checkpoint, expected):
    path, hf = checkpoint
    eos = hf.generation_config.eos_token_id
    assert load(path, "numpy").generation_config.eos_token_id == eos
    assert json.loads((path / "generation_config.json").read_text())["max_new_tokens"] == 6
    greedy = expected["greedy"][:, max(LENGTHS):]
    assert (greedy == eos).any() and (greedy == PAD).any()  # a row ended with eos, then pads: eos is exercised


def test_save_writes_generation_config(checkpoint, tmp_path):
    path, hf = checkpoint
    load(path, "numpy").save(tmp_path)
    saved = transformers.GenerationConfig.from_pretrained(tmp_path)
    assert (saved.eos_token_id, saved.pad_token_id, saved.max_new_tokens) == (hf.generation_config.eos_token_id, PAD, 6)


def test_parity_with_transformers(checkpoint, expected, backend):
    path, _ = checkpoint
    model = load(path, backend)
    ids, mask = prompts()
    for name, options in VARIANTS.items():
        got = model.generate(ids, mask, **options)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected[name], err_msg=name)


@pytest.fixture(scope="module")
def family_expected(prepared):
    made: dict[tuple[str, str], np.ndarray] = {}

    def want(family: str, variant: str) -> np.ndarray:
        if (family, variant) not in made:
            ids, mask = prompts()
            made[family, variant] = hf_generate(prepared(family)[1], ids, mask, do_sample=False, **VARIANTS[variant])
        return made[family, variant]

    return want


@pytest.mark.parametrize("family", [name for name in ARCHS if name not in FULL])
def test_every_family_matches_transformers(prepared, family_expected, backend, family):
    """Greedy and beam search (3 beams) of the other decoder-only families, token for token, 10 new tokens
    on the uneven prompts, which isoform left-pads itself; the greedy rows stop at different steps."""
    path, hf = prepared(family)
    model = load(path, backend)
    ids, mask = prompts()
    for variant in ("greedy", "beam"):
        got = model.generate(ids, mask, **VARIANTS[variant])
        np.testing.assert_array_equal(got, family_expected(family, variant), err_msg=variant)
    greedy = family_expected(family, "greedy")[:, max(LENGTHS):]
    assert (greedy == hf.generation_config.eos_token_id).any() and (greedy == PAD).any()
    assert len(np.unique(greedy)) >= 4  # not one token repeated whatever the prompt


def test_unpadded_and_native_inputs(checkpoint, expected, backend):
    path, hf = checkpoint
    model = load(path, backend)
    ids, mask = prompts()
    got = model.generate(ids[:1], max_new_tokens=10)  # no mask, no padding
    np.testing.assert_array_equal(got, hf_generate(hf, ids[:1], mask[:1], max_new_tokens=10, do_sample=False))
    native = model.backend.to_native(ids, isoform.ir.dtypes.as_dtype("i64"))
    np.testing.assert_array_equal(model.generate(native, mask, max_new_tokens=10), expected["greedy"])


def test_seeded_sampling(checkpoint, expected, backend):
    path, _ = checkpoint
    model = load(path, backend)
    ids, mask = prompts()
    options = dict(do_sample=True, max_new_tokens=10, temperature=0.8, top_k=20, top_p=0.9, eos_token_id=None)
    first = model.generate(ids, mask, seed=7, **options)
    assert first.shape == (3, max(LENGTHS) + 10)
    np.testing.assert_array_equal(model.generate(ids, mask, seed=7, **options), first)
    assert not np.array_equal(model.generate(ids, mask, seed=8, **options), first)
    many = model.generate(ids, mask, seed=7, num_return_sequences=2, **options)
    assert many.shape == (6, max(LENGTHS) + 10)
    top1 = model.generate(ids, mask, do_sample=True, top_k=1, seed=3, max_new_tokens=10)
    np.testing.assert_array_equal(top1, expected["greedy"])


def test_beam_sampling_is_seeded(checkpoint):
    path, _ = checkpoint
    model = load(path, "numpy")
    ids, mask = prompts()
    options = dict(do_sample=True, num_beams=3, num_return_sequences=2, max_new_tokens=6, seed=5)
    first = model.generate(ids, mask, **options)
    assert first.shape[0] == 6
    np.testing.assert_array_equal(model.generate(ids, mask, **options), first)


def test_streaming(checkpoint, expected, backend):
    path, _ = checkpoint
    model = load(path, backend)
    ids, mask = prompts()
    want = expected["greedy"][:, max(LENGTHS):]
    steps = model.generate(ids, mask, max_new_tokens=10, stream=True)
    assert not isinstance(steps, np.ndarray)
    np.testing.assert_array_equal(np.stack(list(steps), 1), want)
    seen, ended = [], []

    class Streamer:
        def __call__(self, tokens):
            seen.append(tokens)

        def end(self):
            ended.append(True)

    out = model.generate(ids, mask, max_new_tokens=10, streamer=Streamer())
    np.testing.assert_array_equal(out, expected["greedy"])
    np.testing.assert_array_equal(np.stack(seen, 1), want)
    assert ended == [True]


def test_abandoned_stream_frees_the_decoder(checkpoint, expected):
    path, _ = checkpoint
    model = load(path, "numpy")
    ids, mask = prompts()
    steps = model.generate(ids, mask, max_new_tokens=10, stream=True)
    next(steps)
    np.testing.assert_array_equal(model.generate(ids, mask, max_new_tokens=10), expected["greedy"])  # a second decoder
    steps.close()
    np.testing.assert_array_equal(model.generate(ids, mask, max_new_tokens=10), expected["greedy"])


BART = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64)
SEQ2SEQ_VARIANTS = [dict(max_new_tokens=6),  # the checkpoint's eos 2 / forced_eos 2 / pad 1 / start 2
                    dict(max_new_tokens=8, eos_token_id=None, repetition_penalty=1.3),  # forced eos at the end
                    dict(max_new_tokens=8, eos_token_id=None, num_beams=3, num_return_sequences=2, length_penalty=0.7)]


def test_seq2seq_parity_with_transformers(hf_checkpoint, backend):
    """The same search code drives an encoder-decoder model (BART) through `Model.decoder()`."""
    path, hf = hf_checkpoint("BartForConditionalGeneration", **BART)
    ids, mask = prompts()
    model = isoform.Model.load(path, backend=backend, task="seq2seq-lm")
    for options in SEQ2SEQ_VARIANTS:
        with torch.no_grad():
            want = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False,
                               **options).numpy()
        np.testing.assert_array_equal(model.generate(ids, mask, **options), want, err_msg=str(options))
