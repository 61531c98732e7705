"""Search strategies over any incremental decoder (``prefill`` / ``step`` / ``reorder``, see
`isoform.generation.Decoder`): greedy, multinomial sampling, beam search and beam sampling, as
transformers v5's ``GenerationMixin._sample`` and ``_beam_search`` do them, in NumPy on the host.

The strategies know nothing of the model family: a `Prompt` says what to prefill the decoder with
and which token sequences the search extends (a decoder-only model extends its left-padded prompt;
an encoder-decoder one its decoder start token). Sampling draws from ``numpy.random.Generator``,
so a seed gives the same tokens on every run of a backend (and on every backend whose logits agree
to rounding); it does not reproduce torch's random stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from . import processors as P
from .config import GenerationConfig
from .stopping import Stopping

NEG = np.float32(-1e9)  # transformers' "very unlikely" beam score
Start = tuple[np.ndarray, np.ndarray, int, list[P.Processor]]  # first logits, sequences, length, processors


class IncrementalDecoder(Protocol):
    """What generation drives (`isoform.generation.Decoder` is the implementation): ``prefill`` /
    ``step`` / ``reorder``, and what `generate` needs to lay out a request."""

    vocab_size: int
    context_length: int | None  # most decoder positions (None: unbounded)
    encoder_decoder: bool  # True: prefill encodes the prompt and starts from ``start_token``
    start_token: int | None
    source: str  # the prompt's input: "input_ids", or float features an encoder reads ("input_features")

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int) -> np.ndarray: ...
    def step(self, tokens: np.ndarray) -> np.ndarray: ...
    def reorder(self, index: np.ndarray) -> None: ...


@dataclass
class Prompt:
    """``input_ids``/``attention_mask`` [batch, seq]: what the decoder is prefilled with;
    ``sequences`` [batch, length]: the tokens the search extends and returns; ``ignore`` [batch]: how
    many leading positions of ``sequences`` are padding (the repetition penalty skips them);
    ``source_ids``: the prompt as ``encoder_no_repeat_ngram_size`` sees it, when not ``input_ids``
    (a decoder-only prompt padded with an out-of-vocabulary ``pad_token_id``, fed padded with 0)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    sequences: np.ndarray
    ignore: np.ndarray
    source_ids: np.ndarray | None = None


@dataclass
class Trace:
    """What ``return_dict_in_generate`` returns besides the sequences, recorded while searching:
    per step the processed ``scores`` (beam search: log-probs) and raw ``logits`` [rows, vocab]
    float32, when asked for; beam search adds ``sequences_scores`` and ``beam_indices``."""

    scores: list[np.ndarray] | None
    logits: list[np.ndarray] | None
    sequences_scores: np.ndarray | None = None
    beam_indices: np.ndarray | None = None

    def record(self, scores: np.ndarray, logits: np.ndarray) -> None:
        for kept, value in ((self.scores, scores), (self.logits, logits)):
            if kept is not None:
                kept.append(np.array(value, np.float32))  # a copy: the decoder may reuse its buffers


@dataclass
class Search:
    """One generation call: the decoder, the resolved config, and what every strategy needs."""

    decoder: IncrementalDecoder
    config: GenerationConfig
    max_new_tokens: int
    stopping: Stopping
    rng: np.random.Generator
    trace: Trace | None = None

    def start(self, prompt: Prompt, copies: int) -> Start:
        """Prefill once per prompt (the decoder checks the prompt first), then repeat every row
        ``copies`` times (beams / returned sequences), as transformers' ``_expand_inputs_for_generation``;
        returns the first logits, the sequences, their length and the processors."""
        logits = self.decoder.prefill(prompt.input_ids, prompt.attention_mask, self.max_new_tokens)
        if copies > 1:
            self.decoder.reorder(np.repeat(np.arange(len(logits)), copies))
            logits = np.repeat(logits, copies, axis=0)
        sequences = np.repeat(prompt.sequences, copies, axis=0)
        length = sequences.shape[1]
        source = prompt.input_ids if prompt.source_ids is None else prompt.source_ids
        processors = P.build(self.config, length, length + self.max_new_tokens, np.repeat(prompt.ignore, copies),
                             source)
        return logits, sequences, length, processors


def sample(search: Search, start: Start) -> Iterator[np.ndarray]:
    """Greedy decoding or multinomial sampling (``config.do_sample``) from ``search.start(prompt,
    config.num_return_sequences)``: yields the next token of every row ([rows] int64; ``pad_token_id``
    once a row has finished, when an eos token is set, even one outside the vocabulary, as
    transformers) until every row has finished."""
    config, stopping = search.config, search.stopping
    logits, sequences, length, processors = start
    buffer = np.zeros((len(sequences), length + search.max_new_tokens), np.int64)
    buffer[:, :length] = sequences
    unfinished = np.ones(len(sequences), bool)
    for _ in range(search.max_new_tokens):
        scores = P.apply(processors, buffer[:, :length], logits)
        if search.trace is not None:
            search.trace.record(scores, logits)
        tokens = _draw(scores, search.rng) if config.do_sample else scores.argmax(-1)
        if stopping.has_eos:
            tokens = np.where(unfinished, tokens, config.pad_token_id)
        buffer[:, length] = tokens
        length += 1
        unfinished &= ~stopping(buffer[:, :length])
        yield tokens.astype(np.int64)
        if not unfinished.any():
            return
        # finished rows run on a token of the vocabulary whatever the pad is (their logits are unused)
        vocab = logits.shape[-1]
        logits = search.decoder.step(np.where((tokens >= 0) & (tokens < vocab), tokens, 0))


def beam_search(search: Search, start: Start) -> np.ndarray:
    """Beam search (beam sampling with ``do_sample``), transformers v5's vectorized ``_beam_search``,
    from ``search.start(prompt, config.num_beams)``: returns the ``num_return_sequences`` best finished
    sequences per prompt, [batch * n, length]."""
    config, stopping = search.config, search.stopping
    beams, eos = config.num_beams, config.eos_ids
    logits, flat, prompt_len, processors = start
    batch, vocab = len(flat) // beams, logits.shape[-1]
    max_length = prompt_len + search.max_new_tokens
    keep = max(2, 1 + len(eos)) * beams  # candidates kept per step: enough to continue after eos
    top_beams = np.arange(keep) < beams
    fill = (config.pad_token_id or eos[0]) if eos else -1  # transformers' output fill value, quirks included

    running = np.full((batch, beams, max_length), fill, np.int64)
    running[:, :, :prompt_len] = flat.reshape(batch, beams, prompt_len)
    sequences = running.copy()
    running_scores = np.zeros((batch, beams), np.float32)
    running_scores[:, 1:] = NEG  # only the first beam's continuations count at the first step
    scores = np.full((batch, beams), NEG, np.float32)
    finished = np.zeros((batch, beams), bool)
    improvable = np.ones((batch, 1), bool)
    running_index = np.full((batch, beams, search.max_new_tokens), -1, np.int64)
    index = running_index.copy()
    cur = prompt_len
    while True:
        log_probs = P.apply(processors, running[:, :, :cur].reshape(batch * beams, cur), P.log_softmax(logits))
        if search.trace is not None:
            search.trace.record(log_probs, logits)
        log_probs = (log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None]).reshape(batch, -1)

        # c. the best `keep` continuations over all beams
        top = _sample_top(log_probs, keep, search.rng) if config.do_sample else _top(log_probs, keep)
        top_scores = np.take_along_axis(log_probs, top, axis=1)
        source = top // vocab
        top_sequences = _gather(running, source)
        top_sequences[:, :, cur] = top % vocab
        top_index = _gather(running_index, source)
        top_index[:, :, cur - prompt_len] = source + np.arange(batch)[:, None] * beams

        # d. which continuations finished
        hits = stopping(top_sequences[:, :, :cur + 1].reshape(batch * keep, cur + 1)).reshape(batch, keep)

        # e. the best unfinished ones run on
        open_scores = top_scores + np.where(hits, NEG, np.float32(0))
        best = _top(open_scores, beams)
        running, running_scores = _gather(top_sequences, best), _gather(open_scores, best)
        running_index = _gather(top_index, best)

        # f. finished ones replace worse finished hypotheses
        done_scores = top_scores / np.float32(_power(cur + 1 - prompt_len, config.length_penalty))
        full = finished.all(-1, keepdims=True) & (config.early_stopping is True)
        just_finished = hits & top_beams[None, :]
        for excluded in (full, ~improvable, ~just_finished):  # one addition each, as transformers rounds them
            done_scores = done_scores + np.where(excluded, NEG, np.float32(0))
        merged = np.concatenate([scores, done_scores], axis=1)
        best = _top(merged, beams)
        sequences = _gather(np.concatenate([sequences, top_sequences], axis=1), best)
        scores = _gather(merged, best)
        index = _gather(np.concatenate([index, top_index], axis=1), best)
        finished = _gather(np.concatenate([finished, just_finished], axis=1), best)

        # g. stop, or reorder the cache and run the chosen tokens
        cur += 1
        improvable = _improvable(improvable, running_scores, scores, finished, cur - prompt_len, config,
                                 search.max_new_tokens)
        if not (improvable.any() and not (finished.all() and config.early_stopping is True) and not hits.all()):
            break
        search.decoder.reorder(running_index[:, :, cur - 1 - prompt_len].reshape(-1))
        logits = search.decoder.step(running[:, :, cur - 1].reshape(-1))

    n = config.num_return_sequences
    sequences = sequences[:, :n].reshape(batch * n, max_length)
    index = index[:, :n].reshape(batch * n, -1)
    generated = (index != -1).sum(1).max()
    if search.trace is not None:
        search.trace.sequences_scores = scores[:, :n].reshape(-1)
        search.trace.beam_indices = index[:, :generated]
    return sequences[:, :prompt_len + generated]


def _improvable(improvable: np.ndarray, running_scores: np.ndarray, scores: np.ndarray, finished: np.ndarray,
                generated: int, config: GenerationConfig, max_new_tokens: int) -> np.ndarray:
    """transformers' ``_check_early_stop_heuristic``: can the best running beam still beat the worst
    finished one (at the length the ``early_stopping`` mode assumes)?"""
    penalty = config.length_penalty
    length = max_new_tokens if config.early_stopping == "never" and penalty > 0.0 else generated
    best_possible = running_scores[:, :1] / np.float32(_power(length, penalty))
    worst = np.where(finished, scores.min(1, keepdims=True), NEG)
    return improvable & (best_possible > worst).any(-1, keepdims=True)


def _power(n: int, p: float) -> float:
    """``n ** p`` as transformers computes the length penalty (a Python float), inf where that overflows."""
    try:
        return n ** p
    except OverflowError:
        return float("inf")


def _top(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first (ties: lower index first)."""
    part = np.argpartition(-x, k - 1, axis=-1)[:, :k] if k < x.shape[-1] else np.broadcast_to(np.arange(x.shape[-1]), x.shape)
    values = np.take_along_axis(x, part, axis=-1)
    order = np.lexsort((part, -values), axis=-1)
    return np.take_along_axis(part, order, axis=-1)


def _sample_top(log_probs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k draws without replacement from softmax(log_probs) per row, sorted by score (beam sampling).
    Where fewer than k tokens have a non-zero probability (top_k=2 with num_beams=3, say, at the first
    step, where transformers' ``multinomial`` fails), those are all taken, then the best-scoring others."""
    probs = P.softmax(log_probs.astype(np.float64))
    rows = []
    for p, scores in zip(probs, log_probs):
        live = int((p > 0).sum())
        if live >= k:
            rows.append(rng.choice(len(p), size=k, replace=False, p=p / p.sum()))
        else:
            rows.append(np.lexsort((-scores, p == 0))[:k])  # the non-zero ones, then by score
    picks = np.stack(rows)
    values = np.take_along_axis(log_probs, picks, axis=-1)
    return np.take_along_axis(picks, np.argsort(-values, axis=-1, kind="stable"), axis=-1)


def _draw(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token per row from softmax(scores) (float64, inverse CDF of one uniform per row). A row whose
    softmax is not a distribution (+inf scores, from a temperature that overflows float32, or every token
    banned) draws uniformly from its best tokens, the limit of a vanishing temperature (transformers'
    ``multinomial`` fails there)."""
    with np.errstate(invalid="ignore"):
        probs = P.softmax(scores.astype(np.float64))
    bad = ~np.isfinite(probs).all(-1)
    if bad.any():
        rows = np.where(np.isnan(scores[bad]), -np.inf, scores[bad])
        top = rows == rows.max(-1, keepdims=True)
        probs[bad] = top / top.sum(-1, keepdims=True)
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(len(scores)) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(-1), scores.shape[-1] - 1)


def _gather(x: np.ndarray, index: np.ndarray) -> Any:
    """``x[b, index[b, j], ...]`` for [batch, beams, ...] arrays (transformers' ``_gather_beams``)."""
    return np.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)
