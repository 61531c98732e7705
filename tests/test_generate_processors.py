"""The host-side pieces of generation against transformers' own classes on random data: logits
processors one by one (`isoform.generation.processors` vs ``transformers.generation.logits_process``),
the composed list ``generate`` builds from a config (``Search.start`` vs the list transformers'
``generate`` builds with ``_get_logits_processor``), and stop strings (`StopStrings` vs
``StopStringCriteria``, byte-level BPE and Metaspace tokenizers)."""

from __future__ import annotations

import numpy as np
import pytest

from isoform.errors import InputError
from isoform.generation import processors as P
from isoform.generation.config import GenerationConfig
from isoform.generation.search import Prompt, Search
from isoform.generation.stopping import Stopping, StopStrings

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
lp = transformers.generation.logits_process

VOCAB = 40


def data(seed: int, rows: int = 4, length: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 6, (rows, length))  # few distinct tokens: repeated n-grams
    scores = (rng.standard_normal((rows, VOCAB)) * 3).astype(np.float32)
    scores[0, :3] = scores[0, 3]  # ties
    return ids, scores


IGNORE = np.array([0, 2, 5, 0])
ENCODER = np.random.default_rng(7).integers(0, 6, (2, 11))  # 2 prompts, each searched by 2 rows (beams)
CASES = [
    ("repetition", lambda: P.repetition_penalty(1.7, IGNORE),
     lambda: lp.RepetitionPenaltyLogitsProcessor(1.7, prompt_ignore_length=torch.from_numpy(IGNORE))),
    ("no-repeat-2", lambda: P.no_repeat_ngram(2), lambda: lp.NoRepeatNGramLogitsProcessor(2)),
    ("no-repeat-3", lambda: P.no_repeat_ngram(3), lambda: lp.NoRepeatNGramLogitsProcessor(3)),
    ("encoder-no-repeat-2", lambda: P.encoder_no_repeat_ngram(2, ENCODER),
     lambda: lp.EncoderNoRepeatNGramLogitsProcessor(2, torch.from_numpy(ENCODER))),
    ("encoder-no-repeat-3", lambda: P.encoder_no_repeat_ngram(3, ENCODER),
     lambda: lp.EncoderNoRepeatNGramLogitsProcessor(3, torch.from_numpy(ENCODER))),
    ("min-length", lambda: P.min_length(12, [3, 5]), lambda: lp.MinLengthLogitsProcessor(12, [3, 5])),
    ("min-length-reached", lambda: P.min_length(9, [3]), lambda: lp.MinLengthLogitsProcessor(9, [3])),
    ("forced-eos", lambda: P.force_token([4], 9), lambda: lp.ForcedEOSTokenLogitsProcessor(10, [4])),
    ("temperature", lambda: P.temperature(0.7), lambda: lp.TemperatureLogitsWarper(0.7)),
    ("top-k", lambda: P.top_k(5), lambda: lp.TopKLogitsWarper(5)),
    ("top-k-keep", lambda: P.top_k(1, keep=3), lambda: lp.TopKLogitsWarper(1, min_tokens_to_keep=3)),
    ("top-p", lambda: P.top_p(0.8), lambda: lp.TopPLogitsWarper(0.8)),
    ("top-p-keep", lambda: P.top_p(0.05, keep=2), lambda: lp.TopPLogitsWarper(0.05, min_tokens_to_keep=2)),
    ("min-p", lambda: P.min_p(0.1), lambda: lp.MinPLogitsWarper(0.1)),
    ("min-p-keep", lambda: P.min_p(0.9, keep=3), lambda: lp.MinPLogitsWarper(0.9, min_tokens_to_keep=3)),
    ("typical-p", lambda: P.typical_p(0.6), lambda: lp.TypicalLogitsWarper(0.6)),
    (
        "typical-p-keep",
        lambda: P.typical_p(0.05, keep=3),
        lambda: lp.TypicalLogitsWarper(0.05, min_tokens_to_keep=3),
    ),
    ("epsilon", lambda: P.epsilon_cutoff(0.02), lambda: lp.EpsilonLogitsWarper(0.02)),
    (
        "epsilon-keep",
        lambda: P.epsilon_cutoff(0.5, keep=3),
        lambda: lp.EpsilonLogitsWarper(0.5, min_tokens_to_keep=3),
    ),
    ("eta", lambda: P.eta_cutoff(0.02), lambda: lp.EtaLogitsWarper(0.02)),
    ("eta-keep", lambda: P.eta_cutoff(0.5, keep=3), lambda: lp.EtaLogitsWarper(0.5, min_tokens_to_keep=3)),
]


def align_ties(got: np.ndarray, want: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``want`` with tokens swapped where the two kept different ones of exactly tied input ``scores``
    (torch's CPU sort orders ties as it likes, NumPy's stable one by index); other differences stay."""
    want = want.copy()
    for r in np.flatnonzero((np.isneginf(got) != np.isneginf(want)).any(-1)):
        ours = np.flatnonzero(~np.isneginf(got[r]) & np.isneginf(want[r]))
        theirs = np.flatnonzero(np.isneginf(got[r]) & ~np.isneginf(want[r]))
        if len(ours) == len(theirs):
            ours = ours[np.argsort(scores[r, ours], kind="stable")]
            theirs = theirs[np.argsort(scores[r, theirs], kind="stable")]
            if (scores[r, ours] == scores[r, theirs]).all():
                want[r, ours], want[r, theirs] = want[r, theirs], want[r, ours]
    return want


@pytest.mark.parametrize(("name", "ours", "theirs"), CASES, ids=[c[0] for c in CASES])
def test_processor_matches_transformers(name, ours, theirs):
    for seed in range(3):
        ids, scores = data(seed)
        want = theirs()(torch.from_numpy(ids), torch.from_numpy(scores.copy())).numpy()
        got = ours()(ids, scores.copy())
        want = align_ties(got, want, scores)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)


def test_log_softmax_matches_torch():
    _, scores = data(0)
    want = torch.log_softmax(torch.from_numpy(scores), -1).numpy()
    np.testing.assert_allclose(P.log_softmax(scores), want, rtol=1e-6, atol=1e-6)


# -- the composed list generate builds from a config ----------------------------------------------
EOS, BATCH, WIDTH, MAX_NEW = 3, 3, 7, 5
PADS = np.array([0, 2, 4])  # left padding of the prompts (the repetition penalty skips it)
SAMPLE = dict(do_sample=True, top_k=None)  # sampling with transformers' default top_k=50 turned off
#: (name, generate options, prompt width). Each one changes the scores of these data somewhere.
COMPOSED = [
    ("temperature", dict(SAMPLE, temperature=0.6), WIDTH),
    ("temperature-hot", dict(SAMPLE, temperature=1.7), WIDTH),
    ("top-k", dict(do_sample=True, top_k=4), WIDTH),
    ("top-p", dict(SAMPLE, top_p=0.7), WIDTH),
    ("typical-p", dict(SAMPLE, typical_p=0.5), WIDTH),
    ("min-p", dict(SAMPLE, min_p=0.2), WIDTH),
    ("epsilon", dict(SAMPLE, epsilon_cutoff=0.03), WIDTH),
    ("eta", dict(SAMPLE, eta_cutoff=0.05), WIDTH),
    ("epsilon-then-eta", dict(SAMPLE, epsilon_cutoff=0.05, eta_cutoff=0.2), WIDTH),
    ("typical-then-epsilon", dict(SAMPLE, typical_p=0.9, epsilon_cutoff=0.06), WIDTH),
    ("repetition", dict(repetition_penalty=1.5), WIDTH),
    ("repetition-below-1-sampled", dict(SAMPLE, repetition_penalty=0.7), WIDTH),
    ("no-repeat-2", dict(no_repeat_ngram_size=2), WIDTH),
    ("encoder-no-repeat-2-beams", dict(encoder_no_repeat_ngram_size=2, num_beams=2), WIDTH),
    ("min-new-tokens", dict(min_new_tokens=3), WIDTH),
    ("min-length", dict(min_length=WIDTH + 2), WIDTH),
    ("min-new-tokens-over-min-length", dict(min_length=WIDTH + 4, min_new_tokens=1), WIDTH),
    ("min-new-tokens-eos-list", dict(min_new_tokens=3, eos_token_id=[3, 5]), WIDTH),
    ("forced-bos", dict(forced_bos_token_id=5), 1),
    ("forced-eos", dict(forced_eos_token_id=4), WIDTH),
    ("forced-eos-list", dict(forced_eos_token_id=[4, 6]), WIDTH),
    (
        "temperature-top-k-top-p-repetition",
        dict(do_sample=True, temperature=0.7, top_k=8, top_p=0.8, repetition_penalty=1.3),
        WIDTH,
    ),
    (
        "every-warper",
        dict(
            do_sample=True,
            temperature=1.4,
            top_k=20,
            top_p=0.97,
            min_p=0.02,
            typical_p=0.95,
            epsilon_cutoff=0.004,
            eta_cutoff=0.004,
        ),
        WIDTH,
    ),
    (
        "warpers-after-penalties",
        dict(
            SAMPLE,
            temperature=0.8,
            top_p=0.9,
            repetition_penalty=1.2,
            no_repeat_ngram_size=3,
            min_new_tokens=2,
            forced_eos_token_id=4,
        ),
        WIDTH,
    ),
    (
        "sample-return-sequences",
        dict(do_sample=True, num_return_sequences=2, temperature=0.5, top_k=5),
        WIDTH,
    ),
    ("beam-sample-keep-2", dict(do_sample=True, num_beams=3, temperature=0.5, top_k=1, top_p=0.05), WIDTH),
    (
        "beam-sample-keep-3",
        dict(do_sample=True, num_beams=2, eos_token_id=[3, 5], min_p=0.9, typical_p=0.05),
        WIDTH,
    ),
    (
        "beam-sample-no-eos",
        dict(
            do_sample=True,
            num_beams=2,
            num_return_sequences=2,
            eos_token_id=None,
            epsilon_cutoff=0.5,
            eta_cutoff=0.5,
        ),
        WIDTH,
    ),
    (
        "greedy",
        dict(
            do_sample=False,
            temperature=0.5,
            top_k=3,
            top_p=0.5,
            min_p=0.5,
            typical_p=0.5,
            epsilon_cutoff=0.3,
            eta_cutoff=0.3,
            repetition_penalty=1.4,
        ),
        WIDTH,
    ),
    ("greedy-beams", dict(num_beams=3, temperature=0.5, top_k=2, top_p=0.3, no_repeat_ngram_size=2), WIDTH),
]


@pytest.fixture(scope="module")
def hf_model():
    transformers.logging.set_verbosity_error()  # the warnings about sampling options with do_sample=False
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=8, n_layer=1, n_head=2, n_positions=32, bos_token_id=1, eos_token_id=EOS
    )
    return transformers.GPT2LMHeadModel(config).eval()


class _Built(Exception):
    pass


def hf_processors(model, ids: np.ndarray, mask: np.ndarray, options: dict):
    """The list transformers' ``generate`` builds, taken from ``_get_logits_processor`` before any forward."""
    build = model._get_logits_processor

    def capture(*args, **kwargs):
        raise _Built(build(*args, **kwargs))

    model._get_logits_processor = capture
    try:
        model.generate(
            torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=MAX_NEW, **options
        )
    except _Built as built:
        return built.args[0]
    finally:
        del model._get_logits_processor
    raise AssertionError("generate ran without building its logits processors")


class _Decoder:
    vocab_size = VOCAB

    def prefill(self, input_ids, attention_mask, max_new_tokens):
        return np.zeros((len(input_ids), VOCAB), np.float32)

    def reorder(self, index):
        pass


def isoform_processors(model, ids: np.ndarray, mask: np.ndarray, options: dict) -> tuple[list, int]:
    """The list isoform's ``generate`` builds (``Search.start``, as for a left-padded decoder-only prompt)
    and the rows per prompt."""
    config = GenerationConfig.from_model_config(model.config.to_dict()).resolve(
        max_new_tokens=MAX_NEW, **options
    )
    copies = config.num_beams if config.num_beams > 1 else config.num_return_sequences
    search = Search(
        _Decoder(),
        config,
        MAX_NEW,
        Stopping(ids.shape[1] + MAX_NEW, config.eos_ids),
        np.random.default_rng(0),
    )
    return search.start(Prompt(ids, mask, ids, (mask == 0).sum(1)), copies)[3], copies


def composed_mismatch(model, index: int) -> str | None:
    """Apply both lists to the same random ids/scores at every step; the first difference, or None."""
    name, options, width = COMPOSED[index]
    rng = np.random.default_rng(list(name.encode()))  # data per case, whatever the order of COMPOSED
    prompt = rng.integers(0, 6, (BATCH, width))
    mask = (np.arange(width)[None, :] >= (PADS if width > 1 else 0 * PADS)[:, None]).astype(np.int64)
    ours, copies = isoform_processors(model, prompt, mask, options)
    theirs = hf_processors(model, prompt, mask, options)
    rows, changed = BATCH * copies, False
    full = np.concatenate([np.repeat(prompt, copies, axis=0), rng.integers(0, 6, (rows, MAX_NEW))], axis=1)
    for step in range(MAX_NEW):
        ids = full[:, : width + step]
        scores = (rng.standard_normal((rows, VOCAB)) * 3).astype(np.float32)
        scores[0, :3] = scores[0, 3]  # ties
        scores[1, 7] = scores[1].max()  # a tie for the best token
        if options.get("num_beams", 1) > 1:  # beam search processes log-probabilities
            scores = P.log_softmax(scores)
        want = theirs(torch.from_numpy(ids), torch.from_numpy(scores.copy())).numpy()
        got = P.apply(ours, ids, scores.copy())
        changed |= not np.array_equal(want, scores)
        want = align_ties(got, want, scores)
        where = f"{name}, sequence length {ids.shape[1]}"
        if got.dtype != np.float32:
            return f"{where}: dtype {got.dtype}"
        if not np.array_equal(np.isneginf(got), np.isneginf(want)):
            return f"{where}: -inf at {np.argwhere(np.isneginf(got) != np.isneginf(want)).tolist()}"
        finite = ~np.isneginf(want)
        if not np.allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5):
            return f"{where}: scores differ by up to {np.abs(got[finite] - want[finite]).max()}"
        probs = torch.softmax(torch.from_numpy(want), -1).numpy()
        if not np.allclose(P.softmax(got), probs, rtol=0, atol=1e-5):
            return f"{where}: probabilities differ by up to {np.abs(P.softmax(got) - probs).max()}"
    return None if changed else f"{name}: the processors never changed the scores (a vacuous case)"


@pytest.mark.parametrize("index", range(len(COMPOSED)), ids=[c[0] for c in COMPOSED])
def test_composed_processors_match_transformers(hf_model, index):
    """The whole list ``generate`` builds from a config scores as the one transformers' ``generate`` builds."""
    assert composed_mismatch(hf_model, index) is None


def _identity(*args, **kwargs):
    return lambda ids, scores: scores


@pytest.mark.parametrize(
    "builder",
    [
        "repetition_penalty",
        "no_repeat_ngram",
        "encoder_no_repeat_ngram",
        "min_length",
        "force_token",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "epsilon_cutoff",
        "eta_cutoff",
    ],
)
def test_composed_check_catches_a_dropped_processor(hf_model, monkeypatch, builder):
    """The comparison above is not vacuous: with any one processor a no-op, some config fails it."""
    monkeypatch.setattr(P, builder, _identity)
    assert any(composed_mismatch(hf_model, i) for i in range(len(COMPOSED))), builder


def test_composed_check_catches_a_wrong_order(hf_model, monkeypatch):
    build = P.build
    monkeypatch.setattr(P, "build", lambda *args: build(*args)[::-1])
    assert any(composed_mismatch(hf_model, i) for i in range(len(COMPOSED)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(typical_p=0.0), "typical_p: Input should be greater than 0"),
        (dict(typical_p=1.5), "typical_p: Input should be less than or equal to 1"),
        (dict(min_p=-0.1), "min_p: Input should be greater than or equal to 0"),
        (dict(min_p=1.5), "min_p: Input should be less than or equal to 1"),
        (dict(epsilon_cutoff=1.0), "epsilon_cutoff: Input should be less than 1"),
        (dict(eta_cutoff=-0.5), "eta_cutoff: Input should be greater than or equal to 0"),
        (dict(top_h=0.4), "does not implement: top_h=0.4"),
        (dict(suppress_tokens=[1]), r"does not implement: suppress_tokens=\[1\]"),
    ],
)
def test_warper_options_checked(options, message):
    with pytest.raises(InputError, match=message):
        GenerationConfig().resolve(do_sample=True, **options)


def test_warper_options_default_off():
    on = GenerationConfig(typical_p=0.5, min_p=0.1, epsilon_cutoff=0.1, eta_cutoff=0.1)
    for config in (
        GenerationConfig().resolve(),
        on.resolve(typical_p=None, min_p=None, epsilon_cutoff=None, eta_cutoff=None),
    ):
        assert (config.typical_p, config.min_p, config.epsilon_cutoff, config.eta_cutoff) == (
            1.0,
            None,
            0.0,
            0.0,
        )
        assert (
            P.build(config.resolve(do_sample=True, top_k=None), 3, 8, np.zeros(2, np.int64), np.zeros((2, 3)))
            == []
        )


# -- stop strings ---------------------------------------------------------------------------------
TEXT = ["stop the stopper now", "the lasting top stops", "st op sto pped stopping", "end. END! done; fin",
        "abcdef cab bad face"] * 20
STOPS = ["stop", "op s", "END!", "n"]


def tokenizers_for_test(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    made = {}
    for kind in ("byte-level", "metaspace"):
        tok = Tokenizer(models.BPE())
        if kind == "byte-level":
            tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
            alphabet = pre_tokenizers.ByteLevel.alphabet()
        else:
            tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
            alphabet = []
        tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=len(alphabet) + 60, initial_alphabet=alphabet,
                                                          special_tokens=["<eos>"]))
        made[kind] = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    return made


def test_stop_strings_match_transformers(tmp_path):
    criteria = transformers.generation.stopping_criteria.StopStringCriteria
    rng = np.random.default_rng(0)
    for kind, hf_tok in tokenizers_for_test(tmp_path).items():
        ours, theirs = StopStrings(STOPS, hf_tok), criteria(hf_tok, STOPS)
        rows = [hf_tok(t, add_special_tokens=False)["input_ids"] for t in TEXT[:4]]
        for row in rows:  # every prefix of real text, plus random sequences
            for end in range(1, len(row) + 1):
                ids = np.array([row[:end]])
                assert ours(ids)[0] == bool(theirs(torch.from_numpy(ids), None)[0]), (kind, hf_tok.decode(row[:end]))
        ids = rng.integers(0, len(hf_tok), (200, 6))
        np.testing.assert_array_equal(ours(ids), theirs(torch.from_numpy(ids), None).numpy(), err_msg=kind)
        assert ours(ids).any() and not ours(ids).all()
