"""Reliability of ``generate``: special token ids outside the vocabulary (GPT-2's default eos 50256 in a
tiny checkpoint, negative ids) generate as transformers does, token for token; one `Model` called
from 8 threads at once (forward and ``generate``) gives the sequential results on every backend;
and a fuzz of the generation options and prompts (`isoform.testing.fuzz`): every case works or
raises an `IsoformError`, never a bare Python error or a hang."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import isoform
from isoform.testing.fuzz import fuzz, hostile_value

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, OUT = 99, 50256  # GPT2Config's default bos/eos, far outside the tiny vocabulary
# no bos/eos/pad given: the config and generation_config.json keep GPT-2's 50256; untied with a wide
# init so greedy continuations vary (see tests/test_generate.py)
GPT2 = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, tie_word_embeddings=False,
            initializer_range=0.2)
T5 = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, decoder_start_token_id=0)
BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)


@pytest.fixture(scope="module")
def gpt2(hf_checkpoint):
    path, hf = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    assert hf.generation_config.eos_token_id == OUT and hf.config.pad_token_id is None
    return path, hf


def prompts(lengths: tuple[int, ...] = (6, 6, 6), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """RIGHT-padded prompts (padding 0) and their mask."""
    rng = np.random.default_rng(seed)
    ids, mask = np.zeros((len(lengths), max(lengths)), np.int64), np.zeros((len(lengths), max(lengths)), np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n], mask[row, :n] = rng.integers(3, VOCAB, n), 1
    return ids, mask


def hf_generate(hf, ids: np.ndarray, mask: np.ndarray, **options) -> np.ndarray:
    """transformers' generate on the prompts LEFT-padded with 0 (a token of the vocabulary)."""
    left, left_mask = np.zeros_like(ids), np.zeros_like(mask)
    for row, n in enumerate(mask.sum(1)):
        left[row, -n:], left_mask[row, -n:] = ids[row, :n], 1
    with torch.no_grad():
        return hf.generate(torch.from_numpy(left), attention_mask=torch.from_numpy(left_mask), do_sample=False,
                           **options).numpy()


def early_eos(tokens: np.ndarray) -> int:
    """A token of the free continuations ``tokens`` [rows, steps] on which the rows end at different steps."""
    def end(row: np.ndarray, token: int) -> int:
        hits = np.flatnonzero(row == token)
        return int(hits[0]) if hits.size else len(row)

    for token in tokens[:, 1:].ravel():
        if len({end(row, token) for row in tokens}) > 1 and end(tokens[0], token) < tokens.shape[1] - 1:
            return int(token)
    raise AssertionError(f"no token ends the rows at different steps: {tokens.tolist()}")


# options -> prompts lengths; eos 50256 (from generation_config.json) and pad defaulting to it throughout
OUT_OF_VOCAB = [
    (dict(max_new_tokens=8), (6, 3, 5)),
    (dict(max_new_tokens=8, min_new_tokens=4), (6, 3, 5)),
    (dict(max_new_tokens=8, min_length=9, repetition_penalty=1.3, no_repeat_ngram_size=2), (6, 6, 6)),
    (dict(max_new_tokens=6, num_beams=3, min_new_tokens=3), (6, 3, 5)),
    (dict(max_new_tokens=6, num_beams=3, num_return_sequences=2, early_stopping=True), (6, 3, 5)),
    (dict(max_new_tokens=6, eos_token_id=[-1, OUT], min_new_tokens=2), (6, 6, 6)),
    (dict(max_new_tokens=6, eos_token_id=-1, num_beams=2, min_new_tokens=2), (6, 6, 6)),
]


@pytest.mark.parametrize(("options", "lengths"), OUT_OF_VOCAB, ids=[str(i) for i in range(len(OUT_OF_VOCAB))])
def test_out_of_vocab_special_ids_match_transformers(gpt2, backend, options, lengths):
    path, hf = gpt2
    model = isoform.Model.load(path, backend=backend, task="causal-lm")
    assert model.generation_config.eos_token_id == OUT
    ids, mask = prompts(lengths)
    got = model.generate(ids, mask, **options)
    want = hf_generate(hf, ids, mask, **options)
    # isoform left-pads the prompt itself, with pad_token_id (here eos 50256, as transformers defaults it)
    pads = np.arange(ids.shape[1])[None, :] < (ids.shape[1] - mask.sum(1))[:, None]
    pads = np.repeat(pads, len(got) // len(ids), axis=0)
    assert (got[:, :ids.shape[1]][pads] == (options.get("eos_token_id", OUT) if not isinstance(
        options.get("eos_token_id"), list) else options["eos_token_id"][0])).all()
    got[:, :ids.shape[1]][pads] = 0
    np.testing.assert_array_equal(got, want)


def test_out_of_vocab_pad_fills_finished_rows(gpt2, backend):
    """eos in the vocabulary, pad outside it (or negative): transformers' greedy search would feed the pad
    of a finished row to the model and fail (embedding index out of range); isoform runs the finished
    row on a token of the vocabulary and returns the pad there. The other rows are transformers' tokens."""
    path, hf = gpt2
    model = isoform.Model.load(path, backend=backend, task="causal-lm")
    ids, mask = prompts((6, 3, 5))
    free = hf_generate(hf, ids, mask, max_new_tokens=10, eos_token_id=None, pad_token_id=0)[:, ids.shape[1]:]
    eos = early_eos(free)
    want = hf_generate(hf, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=0)
    for pad in (OUT, -1):
        got = model.generate(ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=pad)
        new, theirs = got[:, ids.shape[1]:], want[:, ids.shape[1]:].copy()
        finished = np.cumsum(theirs == eos, axis=1) - (theirs == eos) > 0  # after the row's eos
        assert finished.any() and not finished.all()
        theirs[finished] = pad
        np.testing.assert_array_equal(new, theirs[:, :new.shape[1]])
        np.testing.assert_array_equal(got[:, :ids.shape[1]][mask[:, ::-1] == 1], want[:, :ids.shape[1]][mask[:, ::-1] == 1])
        beams = model.generate(ids, mask, max_new_tokens=6, eos_token_id=eos, pad_token_id=pad, num_beams=3)
        np.testing.assert_array_equal(beams[:, ids.shape[1]:], hf_generate(
            hf, ids, mask, max_new_tokens=6, eos_token_id=eos, pad_token_id=pad, num_beams=3)[:, ids.shape[1]:])


# -- threads ----------------------------------------------------------------------------------------
THREADS = 8


def test_one_model_from_many_threads(hf_checkpoint, backend):
    """8 threads at once on one encoder (forward) and one GPT-2 (greedy generate), inputs of different
    batch sizes and lengths per thread (so compile buckets and shape caches are first hit concurrently,
    on freshly loaded models), then again warm: every result equals the sequential one."""
    bert_path, _ = hf_checkpoint("BertModel", **BERT)
    gpt_path, _ = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    rng = np.random.default_rng(0)
    encode = [rng.integers(0, VOCAB, (1 + i % 3, 5 + 7 * i)) for i in range(THREADS)]
    prompts_ = [rng.integers(0, VOCAB, (1 + i % 2, 2 + 5 * i)) for i in range(THREADS)]

    bert = isoform.Model.load(bert_path, backend=backend)
    gpt = isoform.Model.load(gpt_path, backend=backend, task="causal-lm")

    def work(i: int, barrier: threading.Barrier) -> tuple:
        barrier.wait()
        first = bert(input_ids=encode[i]).numpy()["last_hidden_state"]
        tokens = gpt.generate(prompts_[i], max_new_tokens=6)
        other = bert(input_ids=encode[(i + 3) % THREADS]).numpy()["last_hidden_state"]
        return first, tokens, other

    def concurrently() -> list[tuple]:
        barrier = threading.Barrier(THREADS)
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(work, range(THREADS), [barrier] * THREADS))

    cold = concurrently()  # first: every shape's first call (compile, trace, cache fill) runs concurrently
    forward = [bert(input_ids=x).numpy()["last_hidden_state"] for x in encode]
    generated = [gpt.generate(x, max_new_tokens=6) for x in prompts_]
    for results in (cold, concurrently()):
        for i, (first, tokens, other) in enumerate(results):
            np.testing.assert_allclose(first, forward[i], atol=1e-5, err_msg=f"forward, thread {i}")
            np.testing.assert_allclose(other, forward[(i + 3) % THREADS], atol=1e-5, err_msg=f"forward, thread {i}")
            np.testing.assert_array_equal(tokens, generated[i], err_msg=f"generate, thread {i}")


# -- fuzz ---------------------------------------------------------------------------------------------
MAX_NEW = 4  # what a case may ask for, at most (a hostile huge value must be rejected)


def _ids(rng: np.random.Generator, n: int = 3) -> list[int] | int:
    """An eos/pad-like token id: in the vocabulary, just outside, far outside or negative."""
    pick = [lambda: int(rng.integers(VOCAB)), lambda: VOCAB, lambda: OUT, lambda: -1, lambda: -int(rng.integers(2, 99))]
    one = lambda: pick[int(rng.integers(len(pick)))]()
    return one() if rng.random() < 0.5 else [one() for _ in range(int(rng.integers(0, n + 1)))]


SENSIBLE = {
    "max_new_tokens": lambda rng: int(rng.integers(1, MAX_NEW + 1)),
    "max_length": lambda rng: int(rng.integers(1, 12)),
    "min_new_tokens": lambda rng: int(rng.integers(0, 6)),
    "min_length": lambda rng: int(rng.integers(0, 12)),
    "num_beams": lambda rng: int(rng.integers(1, 5)),
    "do_sample": lambda rng: bool(rng.random() < 0.5),
    "temperature": lambda rng: float(rng.choice([0.1, 0.7, 1.0, 3.0, 1e-30, 1e-42, 1e30])),
    "top_k": lambda rng: int(rng.integers(0, 120)),
    "top_p": lambda rng: float(rng.uniform(0.01, 1.0)),
    "min_p": lambda rng: float(rng.uniform(0.0, 1.0)),
    "typical_p": lambda rng: float(rng.uniform(0.01, 1.0)),
    "epsilon_cutoff": lambda rng: float(rng.choice([0.0, 1e-4, 0.02, 0.5, 0.999])),
    "eta_cutoff": lambda rng: float(rng.choice([0.0, 1e-4, 0.02, 0.5, 0.999])),
    "repetition_penalty": lambda rng: float(rng.choice([0.5, 1.0, 1.3, 100.0, 1e-30])),
    "no_repeat_ngram_size": lambda rng: int(rng.integers(0, 5)),
    "encoder_no_repeat_ngram_size": lambda rng: int(rng.integers(0, 5)),
    "eos_token_id": _ids,
    "pad_token_id": lambda rng: _ids(rng, 0) if rng.random() < 0.8 else int(rng.integers(VOCAB)),
    "bos_token_id": lambda rng: int(rng.integers(-2, VOCAB + 2)),
    "forced_bos_token_id": lambda rng: int(rng.integers(-2, VOCAB + 2)),
    "forced_eos_token_id": _ids,
    "bad_words_ids": lambda rng: [[int(rng.integers(VOCAB))]],
    "suppress_tokens": lambda rng: [int(rng.integers(VOCAB))],
    "length_penalty": lambda rng: float(rng.choice([-2.0, 0.0, 0.5, 1.0, 2.0, 1e3])),
    "early_stopping": lambda rng: [True, False, "never"][int(rng.integers(3))],
    "num_return_sequences": lambda rng: int(rng.integers(1, 4)),
    "seed": lambda rng: int(rng.integers(0, 2**31)),
    "stream": lambda rng: bool(rng.random() < 0.5),
    "streamer": lambda rng: (lambda tokens: None),
    "stop_strings": lambda rng: ["a"],
    "tokenizer": lambda rng: object(),
}


def hostile_prompt(rng: np.random.Generator) -> tuple[object, object]:
    """``(input_ids, attention_mask)``: mostly fine, sometimes empty, 3-d, floats, out of the vocabulary,
    ragged, a scalar, with a bad mask."""
    batch, seq = int(rng.integers(1, 3)), int(rng.integers(1, 6))
    ids = rng.integers(0, VOCAB, (batch, seq))
    kind = int(rng.integers(14))
    if kind == 0:
        return np.zeros((batch, 0), np.int64), None
    if kind == 1:
        return np.zeros((0, seq), np.int64), None
    if kind == 2:
        return ids[None], None
    if kind == 3:
        return ids.astype(np.float32), None
    if kind == 4:
        return ids + VOCAB, None
    if kind == 5:
        return -ids - 1, None
    if kind == 6:
        return [[1, 2, 3], [4]], None
    if kind == 7:
        return 5, None
    if kind == 8:
        return ids.astype(np.uint64) + np.uint64(2**63), None
    if kind == 9:
        return ids, np.zeros_like(ids)
    if kind == 10:
        return ids, rng.integers(-1, 3, ids.shape)
    if kind == 11:
        return ids, np.ones((batch, seq + 1), np.int64)
    if kind == 12:
        return ids.tolist(), np.ones(ids.shape, np.float32)
    return ids, None


def generation_target(model: isoform.Model):
    names = sorted(SENSIBLE)

    def target(rng: np.random.Generator) -> None:
        chosen = rng.choice(names, size=int(rng.integers(1, 4)), replace=False)
        options = {str(k): hostile_value(rng) if rng.random() < 0.35 else SENSIBLE[str(k)](rng) for k in chosen}
        if "max_length" not in options:  # cases stay fast (a hostile bigger one must be rejected)
            options.setdefault("max_new_tokens", MAX_NEW)
        ids, mask = hostile_prompt(rng) if rng.random() < 0.3 else (rng.integers(0, VOCAB, (2, 4)), None)
        out = model.generate(ids, mask, **options)
        if not isinstance(out, np.ndarray):
            out = np.stack(list(out), axis=1) if options.get("stream") is True else out  # a stream runs to its end
        assert out.dtype == np.int64 and out.ndim == 2, (out.dtype, out.shape)

    return target


@pytest.fixture(scope="module")
def fuzz_models(hf_checkpoint):
    gpt_path, _ = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    t5_path, _ = hf_checkpoint("T5ForConditionalGeneration", **T5)
    return {"gpt2": isoform.Model.load(gpt_path, task="causal-lm"),
            "t5": isoform.Model.load(t5_path, task="seq2seq-lm")}


@pytest.mark.parametrize("name", ["gpt2", "t5"])
def test_fuzz_generation_options(fuzz_models, name):
    model, ids = fuzz_models[name], np.array([[5, 6, 7, 8], [9, 10, 11, 12]])
    before = model.generate(ids, max_new_tokens=MAX_NEW, num_beams=2), model.generate(ids, max_new_tokens=MAX_NEW)
    report = fuzz(f"generate options ({name})", generation_target(model))
    print(report)
    assert report.cases > 0 and report.accepted > 0
    # rejected and abandoned requests left no state behind (the decoders are reused)
    after = model.generate(ids, max_new_tokens=MAX_NEW, num_beams=2), model.generate(ids, max_new_tokens=MAX_NEW)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
