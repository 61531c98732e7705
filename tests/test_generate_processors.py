"""The host-side pieces of generation against transformers' own classes on random data: logits
processors (`isoform.generation.processors` vs ``transformers.generation.logits_process``) and stop
strings (`StopStrings` vs ``StopStringCriteria``, byte-level BPE and Metaspace tokenizers)."""

from __future__ import annotations

import numpy as np
import pytest

from isoform.generation import processors as P
from isoform.generation.stopping import StopStrings

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
]


@pytest.mark.parametrize(("name", "ours", "theirs"), CASES, ids=[c[0] for c in CASES])
def test_processor_matches_transformers(name, ours, theirs):
    for seed in range(3):
        ids, scores = data(seed)
        want = theirs()(torch.from_numpy(ids), torch.from_numpy(scores.copy())).numpy()
        got = ours()(ids, scores.copy())
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)


def test_log_softmax_matches_torch():
    _, scores = data(0)
    want = torch.log_softmax(torch.from_numpy(scores), -1).numpy()
    np.testing.assert_allclose(P.log_softmax(scores), want, rtol=1e-6, atol=1e-6)


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
