"""Logits processors: NumPy versions of transformers' ``LogitsProcessor``s, in the order
``generate`` applies them (``GenerationMixin._get_logits_processor``).

Each processor is ``f(ids, scores) -> scores``: ``ids`` [rows, length] int64 are the sequences so far
(the left-padded prompt included), ``scores`` [rows, vocab] float32. Arithmetic stays in float32 with
the same formulas as transformers, so the processed scores match it to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .config import GenerationConfig

Processor = Callable[[np.ndarray, np.ndarray], np.ndarray]
NEG_INF = np.float32(-np.inf)


def repetition_penalty(penalty: float, ignore: np.ndarray) -> Processor:
    """Divide (positive) or multiply (negative) the score of every token already in the row by
    ``penalty``; the first ``ignore[row]`` positions (left padding) do not count."""
    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        vocab = scores.shape[-1]
        cols = in_vocab(ids, vocab)
        cols[np.arange(ids.shape[1])[None, :] < ignore[:, None]] = vocab  # spare column, dropped below
        out = np.concatenate([scores, np.zeros((scores.shape[0], 1), scores.dtype)], axis=1)
        picked = np.take_along_axis(out, cols, axis=1)
        np.put_along_axis(out, cols, np.where(picked < 0, picked * penalty, picked / penalty), axis=1)
        return out[:, :vocab]
    return apply


def no_repeat_ngram(size: int) -> Processor:
    """Ban every token that would complete an n-gram of ``size`` already in the row."""
    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        length, vocab = ids.shape[1], scores.shape[-1]
        if length < size:
            return scores
        prefix = ids[:, length + 1 - size:]
        windows = sliding_window_view(ids, size, axis=1)  # [rows, length - size + 1, size]
        matches = (windows[..., :-1] == prefix[:, None, :]).all(-1)
        banned = np.zeros((ids.shape[0], vocab + 1), bool)
        np.put_along_axis(banned, np.where(matches, in_vocab(windows[..., -1], vocab), vocab), True, axis=1)
        return np.where(banned[:, :vocab], NEG_INF, scores)
    return apply


def encoder_no_repeat_ngram(size: int, encoder_ids: np.ndarray) -> Processor:
    """Ban every token that would complete an n-gram of ``size`` found in the row's encoder input
    (``encoder_ids`` [batch, src]; rows of the search are its batch rows repeated, as beams are)."""
    if size > encoder_ids.shape[1]:  # no n-gram that long in the input: nothing to ban (as transformers)
        return lambda ids, scores: scores
    windows = sliding_window_view(encoder_ids, size, axis=1)  # [batch, src - size + 1, size]

    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        length, vocab = ids.shape[1], scores.shape[-1]
        if length < size - 1:
            return scores
        rows = np.repeat(windows, ids.shape[0] // len(windows), axis=0)
        prefix = ids[:, length + 1 - size:length]
        matches = (rows[..., :-1] == prefix[:, None, :]).all(-1)
        banned = np.zeros((ids.shape[0], vocab + 1), bool)
        np.put_along_axis(banned, np.where(matches, in_vocab(rows[..., -1], vocab), vocab), True, axis=1)
        return np.where(banned[:, :vocab], NEG_INF, scores)
    return apply


def min_length(length: int, eos: Sequence[int]) -> Processor:
    """No eos token while the sequences are shorter than ``length`` (prompt included); eos ids outside
    the vocabulary are ignored (transformers masks ``isin(arange(vocab), eos)``)."""
    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if ids.shape[1] < length:
            scores = scores.copy()
            scores[:, [e for e in eos if 0 <= e < scores.shape[-1]]] = NEG_INF
        return scores
    return apply


def force_token(tokens: Sequence[int], at_length: int) -> Processor:
    """Only ``tokens`` (score 0) when the sequences have ``at_length`` tokens (forced bos/eos)."""
    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if ids.shape[1] != at_length:
            return scores
        out = np.full_like(scores, NEG_INF)
        out[:, list(tokens)] = 0
        return out
    return apply


def temperature(t: float) -> Processor:
    return lambda ids, scores: scores / np.float32(t)


def top_k(k: int, keep: int = 1) -> Processor:
    """Keep the ``max(k, keep)`` best scores (ties with the last one kept too)."""
    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        n = min(max(k, keep), scores.shape[-1])
        kth = -np.partition(-scores, n - 1, axis=-1)[:, n - 1:n]
        return np.where(scores < kth, NEG_INF, scores)
    return apply


def top_p(p: float, keep: int = 1) -> Processor:
    """Nucleus: drop the least likely tokens whose cumulative probability is <= 1 - p (keep >= ``keep``)."""
    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        order = np.argsort(scores, axis=-1, kind="stable")
        cumulative = np.cumsum(softmax(np.take_along_axis(scores, order, axis=-1)), axis=-1, dtype=np.float32)
        drop = cumulative <= np.float32(1 - p)
        drop[:, -keep:] = False
        return _drop_sorted(scores, order, drop)
    return apply


def min_p(p: float, keep: int = 1) -> Processor:
    """Drop the tokens less likely than ``p`` times the most likely one (keep the ``keep`` likeliest)."""
    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        probs = softmax(scores)
        remove = probs < np.float32(p) * probs.max(-1, keepdims=True)
        best = np.argsort(-probs, axis=-1, kind="stable")[:, :min(keep, probs.shape[-1])]
        np.put_along_axis(remove, best, False, axis=-1)
        return np.where(remove, NEG_INF, scores)
    return apply


def typical_p(mass: float, keep: int = 1) -> Processor:
    """Locally typical sampling: keep the tokens whose surprisal is closest to the entropy, up to
    probability ``mass`` (at least ``keep``)."""
    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        normalized = log_softmax(scores)
        p = np.exp(normalized)
        with np.errstate(invalid="ignore"):  # -inf * 0: nan, skipped as torch's nansum does
            entropy = -np.nansum(normalized * p, axis=-1, keepdims=True)
        shifted = np.abs(-normalized - entropy)
        order = np.argsort(shifted, axis=-1, kind="stable")
        ranked = np.take_along_axis(shifted, order, axis=-1)
        cumulative = np.cumsum(softmax(np.take_along_axis(scores, order, axis=-1)), axis=-1, dtype=np.float32)
        last = np.minimum((cumulative < np.float32(mass)).sum(-1), scores.shape[-1] - 1)
        drop = ranked > np.take_along_axis(ranked, last[:, None], axis=-1)
        drop[:, :keep] = False
        return _drop_sorted(scores, order, drop)
    return apply


def epsilon_cutoff(epsilon: float, keep: int = 1) -> Processor:
    """Drop the tokens with probability below ``epsilon`` (keep the ``keep`` best scores)."""
    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return _cut(scores, softmax(scores) < np.float32(epsilon), keep)
    return apply


def eta_cutoff(epsilon: float, keep: int = 1) -> Processor:
    """Eta sampling: drop the tokens with probability below ``min(epsilon, sqrt(epsilon) * exp(-entropy))``
    (keep the ``keep`` best scores)."""
    eps = np.float32(epsilon)

    def apply(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        normalized = log_softmax(scores)
        probs = softmax(scores)
        # torch's Categorical(logits=scores).entropy(): log-probs clamped to the float32 minimum
        entropy = -(np.maximum(normalized, np.finfo(np.float32).min) * np.exp(normalized)).sum(-1, keepdims=True)
        eta = np.minimum(eps, np.sqrt(eps) * np.exp(-entropy))
        return _cut(scores, probs < eta, keep)
    return apply


def _drop_sorted(scores: np.ndarray, order: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """``-inf`` at the tokens ``drop`` marks, given in the sorted ``order`` (top-p, typical)."""
    remove = np.empty_like(drop)
    np.put_along_axis(remove, order, drop, axis=-1)
    return np.where(remove, NEG_INF, scores)


def _cut(scores: np.ndarray, remove: np.ndarray, keep: int) -> np.ndarray:
    """``-inf`` where ``remove``, except the scores >= the ``keep``-th best (transformers' epsilon/eta)."""
    n = min(keep, scores.shape[-1])
    kth = -np.partition(-scores, n - 1, axis=-1)[:, n - 1:n]
    return np.where(remove & (scores < kth), NEG_INF, scores)


def in_vocab(ids: np.ndarray, vocab: int) -> np.ndarray:
    """``ids`` with every id outside ``[0, vocab)`` (an out-of-vocabulary pad or eos filling finished
    rows, say) replaced by ``vocab``: the spare column the processors drop, so such ids count for
    nothing (and a negative one never wraps around to the end of the vocabulary)."""
    return np.where((ids >= 0) & (ids < vocab), ids, vocab)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def build(config: GenerationConfig, prompt_length: int, max_length: int, ignore: np.ndarray,
          encoder_ids: np.ndarray) -> list[Processor]:
    """The processors ``config`` asks for, in transformers' order. ``prompt_length``: tokens per row
    before generation (padding included); ``max_length``: prompt + max_new_tokens; ``ignore[row]``:
    that row's left padding (not penalised by the repetition penalty); ``encoder_ids``: the input the
    decoder was prefilled with, one row per prompt (the encoder input, or a decoder-only prompt)."""
    c, eos = config, config.eos_ids
    out: list[Processor] = []
    if c.repetition_penalty != 1.0:
        out.append(repetition_penalty(c.repetition_penalty, ignore))
    if c.no_repeat_ngram_size:
        out.append(no_repeat_ngram(c.no_repeat_ngram_size))
    if c.encoder_no_repeat_ngram_size:
        out.append(encoder_no_repeat_ngram(c.encoder_no_repeat_ngram_size, encoder_ids))
    # transformers: min_new_tokens, when set, replaces min_length (prompt + min_new_tokens)
    least = c.min_length if c.min_new_tokens is None else prompt_length + c.min_new_tokens
    if eos and least > prompt_length:
        out.append(min_length(least, eos))
    if c.forced_bos_token_id is not None:
        out.append(force_token([c.forced_bos_token_id], 1))
    if c.forced_eos_token_id is not None:
        forced = c.forced_eos_token_id
        out.append(force_token([forced] if isinstance(forced, int) else forced, max_length - 1))
    if c.do_sample:
        keep = (len(eos) + 1 if eos else 2) if c.num_beams > 1 else 1
        if c.temperature != 1.0:
            out.append(temperature(c.temperature))
        if c.top_k:
            out.append(top_k(c.top_k, keep))
        if c.top_p < 1.0:
            out.append(top_p(c.top_p, keep))
        if c.min_p is not None:
            out.append(min_p(c.min_p, keep))
        if c.typical_p < 1.0:
            out.append(typical_p(c.typical_p, keep))
        if 0.0 < c.epsilon_cutoff < 1.0:
            out.append(epsilon_cutoff(c.epsilon_cutoff, keep))
        if 0.0 < c.eta_cutoff < 1.0:
            out.append(eta_cutoff(c.eta_cutoff, keep))
    return out


def apply(processors: Sequence[Processor], ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    for processor in processors:
        scores = processor(ids, scores)
    return scores
