"""`generate`: the body of ``Model.generate`` — checks the request, lays prompts out left-padded,
picks the strategy and runs it on the model's incremental decoder (`Decoder`); it knows nothing
of `Model`.

Everything that can be wrong with a request (options, prompt shapes, lengths, token ids) is an error
raised before any compute, also with ``stream=True`` (the generator is returned afterwards).

Streamers: an object with a ``put`` method is a transformers streamer (``transformers.TextStreamer``,
``TextIteratorStreamer`` or any ``BaseStreamer``): it gets ``put(prompt)`` ([batch, seq] int64 NumPy: the
left-padded prompt, or a seq2seq model's decoder start tokens), then ``put(tokens)`` ([rows] int64 NumPy)
after every step and ``end()``, as transformers calls it (its text streamers read ``.shape`` and
``.tolist()``, which NumPy arrays have). Any other callable is isoform's: ``streamer(tokens)`` every step,
``end()`` after the last one if it has one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import InputError
from .config import GenerationConfig
from .outputs import GenerateOutput
from .search import IncrementalDecoder, Prompt, Search, Start, Trace, beam_search, sample
from .stopping import Stopping, StopStrings

Streamer = Any  # a callable given each step's tokens, or a transformers streamer (``put`` / ``end``)


def generate(decoder: IncrementalDecoder, base: GenerationConfig, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
             *, release: Callable[[], None] = lambda: None, stream: bool = False, streamer: Streamer | None = None,
             seed: int | None = None, tokenizer: Any = None, generation_config: Any = None,
             **options: Any) -> np.ndarray | GenerateOutput | Iterator[np.ndarray]:
    """See `isoform.Model.generate`. ``decoder``: the model's incremental decoder, free for this call;
    ``base``: the model's generation config, under ``generation_config`` (`GenerationConfig.coerce`: the
    options it sets win) under ``options``; ``release()`` is called once the decoder is free again (at
    the end, on an error, or when a stream is closed)."""
    try:
        if generation_config is not None:
            base = base.update(GenerationConfig.coerce(generation_config))
        search, prompt = _start(decoder, base, input_ids, attention_mask, stream, streamer, seed, tokenizer, options)
        config = search.config
        copies = config.num_beams if config.num_beams > 1 else config.num_return_sequences
        start = search.start(prompt, copies)  # the decoder checks the prompt, then prefills
        beams = beam_search(search, start) if config.num_beams > 1 else None
    except BaseException:
        release()
        raise
    if beams is not None:
        release()
        return beams if search.trace is None else GenerateOutput(beams, search.trace, beam=True)
    steps = _steps(search, start, prompt.sequences, streamer, release)
    if stream:
        return steps
    tokens = list(steps)
    first = np.repeat(prompt.sequences, config.num_return_sequences, axis=0)
    out = np.concatenate([first, np.stack(tokens, axis=1)], axis=1) if tokens else first
    return out if search.trace is None else GenerateOutput(out, search.trace, beam=False)


def _start(decoder: IncrementalDecoder, base: GenerationConfig, input_ids: np.ndarray, attention_mask: np.ndarray | None,
           stream: Any, streamer: Any, seed: int | None, tokenizer: Any, options: dict[str, Any]) -> tuple[Search, Prompt]:
    """Everything that can be wrong with a request is raised here, before any compute."""
    if not isinstance(stream, bool | np.bool_):
        raise InputError(f"stream must be True or False, got {stream!r}")
    if streamer is not None and not (callable(streamer) or callable(getattr(streamer, "put", None))):
        raise InputError(f"streamer must be callable (given each step's tokens) or a transformers streamer (with "
                         f"put/end), got {type(streamer).__name__}")
    streaming = bool(stream) or streamer is not None
    config = base.resolve(**options)
    _check_forced(config, decoder.vocab_size)
    ids, mask = _rows(input_ids, attention_mask, decoder.source)
    if decoder.source != "input_ids" and config.encoder_no_repeat_ngram_size:
        raise InputError(f"encoder_no_repeat_ngram_size needs token ids as the encoder input, this model reads "
                         f"{decoder.source}")
    seq2seq = decoder.encoder_decoder
    prompt_len = 1 if seq2seq else int(mask.sum(1).max())  # after left-padding
    max_new = _max_new_tokens(config, base, options, prompt_len, None if seq2seq else decoder.context_length)
    copies = config.num_beams if config.num_beams > 1 else config.num_return_sequences
    _check_size(decoder, len(ids), copies, prompt_len, max_new, config)
    if config.num_beams > 1 and streaming:
        raise InputError(f"streaming (stream=True or a streamer) works with greedy decoding and sampling, "
                         f"not beam search (num_beams={config.num_beams})")
    if config.num_beams > 1 and max(2, 1 + len(config.eos_ids)) > decoder.vocab_size:
        raise InputError(f"beam search keeps {1 + len(config.eos_ids)} candidates per beam (one more than the "
                         f"{len(config.eos_ids)} eos_token_id(s)), more than the vocabulary of {decoder.vocab_size}")
    if config.stop_list and tokenizer is None:
        raise InputError("stop_strings need the model's tokenizer: generate(..., stop_strings=[...], tokenizer=tok)")
    if config.return_dict_in_generate and stream:
        raise InputError("return_dict_in_generate=True returns the whole result at the end: it does not combine "
                         "with stream=True (use a streamer= instead)")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    strings = StopStrings(config.stop_list, tokenizer) if config.stop_list else None
    stopping = Stopping(prompt_len + max_new, config.eos_ids, strings)
    if seq2seq:
        start = np.full((len(ids), 1), decoder.start_token, np.int64)
        prompt = Prompt(ids, mask, start, np.zeros(len(ids), np.int64))
    else:
        pad = config.pad_token_id if config.pad_token_id is not None else 0
        ids, mask = _left_pad(ids, mask, pad)
        # the returned prompt is padded with pad_token_id, the model's input with a token of the vocabulary
        # (the padding is masked): a pad outside it (GPT-2's default eos 50256 of a tiny checkpoint) is fine
        fed = ids if 0 <= pad < decoder.vocab_size else np.where(mask == 1, ids, 0)
        prompt = Prompt(fed, mask, ids, (mask == 0).sum(1), ids)
    trace = None
    if config.return_dict_in_generate:
        trace = Trace([] if config.output_scores else None, [] if config.output_logits else None)
    return Search(decoder, config, max_new, stopping, np.random.default_rng(seed), trace), prompt


def _steps(search: Search, start: Start, prompt: np.ndarray, streamer: Streamer | None,
           release: Callable[[], None]) -> Iterator[np.ndarray]:
    put = getattr(streamer, "put", None)  # a transformers streamer: the prompt first, then each step's tokens
    try:
        if put is not None:
            put(prompt)
        for tokens in sample(search, start):
            if streamer is not None:
                (put or streamer)(tokens)
            yield tokens
        if streamer is not None and hasattr(streamer, "end"):
            streamer.end()
    finally:
        release()  # free for the next call (also when a stream is abandoned)


def _rows(ids: np.ndarray, mask: np.ndarray | None, source: str = "input_ids") -> tuple[np.ndarray, np.ndarray]:
    """int64 ids (or, for a ``source`` other than input_ids, float features [batch, frames, features])
    and mask [batch, seq], checked: 0/1 mask with one block of ones per row (the decoder's prefill
    checks them against the model)."""
    mask = np.ones(ids.shape[:2], np.int64) if mask is None else mask
    if source != "input_ids":
        if ids.ndim != 3 or ids.shape[0] == 0 or ids.dtype.kind != "f":
            raise InputError(f"{source} must be floats of shape [batch, frames, features] with batch >= 1, got "
                             f"{ids.dtype} of shape {ids.shape}")
    elif ids.ndim != 2 or ids.shape[0] == 0 or ids.dtype.kind not in "iu":
        raise InputError(f"input_ids must be integer token ids of shape [batch, seq] with batch >= 1, got "
                         f"{ids.dtype} of shape {ids.shape}")
    if mask.shape != ids.shape[:2]:
        raise InputError(f"attention_mask has shape {mask.shape}, but {source} has shape {ids.shape}: they must be equal")
    if not np.isin(mask, (0, 1)).all():
        raise InputError("attention_mask must hold only 0 (padding) and 1 (token)")
    lengths = mask.sum(1)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise InputError(f"prompt(s) {empty.tolist()} of the batch are empty (no token with attention_mask 1): "
                         "every prompt needs at least one token, e.g. the bos token")
    gaps = np.flatnonzero(np.abs(np.diff(np.pad(mask, ((0, 0), (1, 1))), axis=1)).sum(1) != 2)
    if gaps.size:
        raise InputError(f"attention_mask rows {gaps.tolist()} have padding between tokens; pad on the left or right only")
    return (ids if source != "input_ids" else ids.astype(np.int64)), mask.astype(np.int64)


def _check_forced(config: GenerationConfig, vocab: int) -> None:
    """Forced tokens (mBART/M2M100 target languages, forced eos) must be in the vocabulary."""
    for key in ("forced_bos_token_id", "forced_eos_token_id"):
        value = getattr(config, key)
        bad = [t for t in ([value] if isinstance(value, int) else value or []) if not 0 <= t < vocab]
        if bad:
            raise InputError(f"{key}={value!r} is not in the vocabulary [0, {vocab}): check the target language token")


def _left_pad(ids: np.ndarray, mask: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's tokens moved to the right end, ``pad`` (mask 0) before them; width = longest prompt."""
    lengths = mask.sum(1)
    width = int(lengths.max())
    out = np.full((len(ids), width), pad, np.int64)
    out_mask = (np.arange(width)[None, :] >= width - lengths[:, None]).astype(np.int64)
    out[out_mask == 1] = ids[mask == 1]
    return out, out_mask


def _max_new_tokens(config: GenerationConfig, base: GenerationConfig, options: dict[str, Any], prompt_len: int,
                    context: int | None) -> int:
    """New tokens to generate: ``max_new_tokens``, else ``max_length`` - prompt (transformers' default
    ``max_length`` 20 counts new tokens and is capped at the context window; the decoder's prefill
    checks the total against the context window)."""
    if config.max_new_tokens is not None:
        new = config.max_new_tokens
    elif options.get("max_length") is None and base.max_length is None:
        new = config.max_length if context is None else min(config.max_length, context - prompt_len)
    else:
        new = config.max_length - prompt_len
        if new <= 0:
            raise InputError(f"max_length is {config.max_length} but the prompt already has {prompt_len} tokens; "
                             "set max_new_tokens instead")
        if context is not None and config.max_length > context:
            raise InputError(f"max_length is {config.max_length}, more than the model's context window of {context} "
                             "tokens (max_position_embeddings): lower max_length or set max_new_tokens")
    return new


def _memory_bytes() -> int | None:
    """This machine's physical memory (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_size(decoder: IncrementalDecoder, batch: int, copies: int, prompt_len: int, max_new: int,
                config: GenerationConfig) -> None:
    """InputError when the request cannot fit in memory (a huge ``max_new_tokens``, ``max_length``,
    ``num_beams`` or ``num_return_sequences`` on a model without a position limit would otherwise fail
    allocating the KV cache, or run for ever): the cache, the search's token buffers and logits."""
    context = decoder.context_length
    if context is not None and prompt_len + max_new > context:
        return  # the decoder's prefill rejects it naming the context window, before allocating anything
    limit = _memory_bytes()
    per_position = int(getattr(decoder, "cache_bytes_per_position", 0))
    need = batch * copies * ((prompt_len + max_new) * (per_position + 64) + int(decoder.vocab_size) * 16)
    if limit is not None and need > limit:
        what = f"num_beams={config.num_beams}" if config.num_beams > 1 else f"num_return_sequences={config.num_return_sequences}"
        raise InputError(f"generate would need about {need / 2**30:.3g} GiB: {batch} prompt(s) x {copies} ({what}) "
                         f"x {prompt_len} + {max_new} positions (max_new_tokens {max_new}), more than this machine's "
                         f"{limit / 2**30:.3g} GiB of memory: lower max_new_tokens (or max_length), num_beams, "
                         "num_return_sequences or the batch")
