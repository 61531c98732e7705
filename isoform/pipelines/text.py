"""Text pipelines: feature-extraction, sentence-embedding, fill-mask, text-classification,
text-generation and the seq2seq text2text-generation / summarization / translation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError, TokenizerError
from .base import _UNSET, Pipeline, _read_json, _softmax, classification_scores, label_names

#: transformers' text-generation pipeline defaults, for what neither the call nor the checkpoint sets
GENERATION_DEFAULTS = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}


class FeatureExtractionPipeline(Pipeline):
    """transformers' feature-extraction: the model's first output, ``[1, seq, hidden]`` nested lists per
    input (``seq`` padded to the longest input of its batch, as transformers' batches give),
    NumPy arrays with ``return_tensors=True``."""

    def _run(self, items: list[str], truncation: Any = None, tokenize_kwargs: dict[str, Any] | None = None,
             return_tensors: bool = False) -> list[Any]:
        tk = dict(tokenize_kwargs or {})
        if truncation is not None:
            if "truncation" in tk:
                raise InputError("truncation given twice (as an argument and in tokenize_kwargs)")
            tk["truncation"] = truncation
        out = self._forward(self._encode(items, **tk))
        first = out[next(iter(self.model.graph.outputs))]
        return [first[i:i + 1] if return_tensors else first[i:i + 1].tolist() for i in range(len(items))]


POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


def sentence_transformers_modules(directory: Path) -> tuple[tuple[str, ...], bool, int | None, bool]:
    """(pooling modes in concatenation order, normalize, max_seq_length, do_lower_case) of a
    sentence-transformers checkpoint directory; a plain checkpoint pools by mean, unnormalized."""
    modes: tuple[str, ...] = ("mean",)
    normalize, max_len, lower = False, None, False
    st = directory / "sentence_bert_config.json"
    if st.exists():
        cfg = _read_json(st)
        max_len, lower = cfg.get("max_seq_length"), bool(cfg.get("do_lower_case", False))
    listed = directory / "modules.json"
    if not listed.exists():
        return modes, normalize, max_len, lower
    for module in _read_json(listed):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer":
            continue
        if kind == "Pooling":
            cfg = _read_json(directory / module.get("path", "") / "config.json")
            mode = cfg.get("pooling_mode")
            if mode is None:
                mode = tuple(m for key, m in POOLING_KEYS.items() if cfg.get(key, False)) or ("mean",)
            modes = (mode,) if isinstance(mode, str) else tuple(mode)
            bad = sorted(set(modes) - set(POOLING_KEYS.values()))
            if bad:
                raise ConfigError(f"{module.get('path')}/config.json: unknown pooling mode(s) {bad}")
            if cfg.get("include_prompt", True) is False:
                raise ConfigError(f"{module.get('path')}/config.json: include_prompt=false is not supported")
        elif kind == "Normalize":
            normalize = True
        else:
            raise ConfigError(f"modules.json: sentence-transformers module {module.get('type')!r} is not supported "
                              "(isoform runs Transformer, Pooling and Normalize)")
    return modes, normalize, max_len, lower


def pool(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """sentence-transformers' Pooling of token embeddings [batch, seq, dim] under ``mask`` [batch, seq]."""
    h, m = hidden.astype(np.float32), mask.astype(np.float32)[..., None]
    rows, seq = np.arange(len(h)), h.shape[1]
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(h[rows, mask.argmax(1)])
        elif mode == "max":
            out.append(np.where(m > 0, h, -np.inf).max(1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = np.maximum(m.sum(1), 1e-9)
            out.append((h * m).sum(1) / (count if mode == "mean" else np.sqrt(count)))
        elif mode == "weightedmean":
            weights = np.arange(1, seq + 1, dtype=np.float32)[None, :, None] - mask.argmax(1)[:, None, None]
            w = m * weights
            out.append((h * w).sum(1) / np.maximum(w.sum(1), 1e-9))
        else:  # lasttoken: the last attended position (the last position when none is)
            flipped = mask[:, ::-1]
            last = np.where(flipped.max(1) == 0, 0, flipped.argmax(1))
            out.append((h * m)[rows, seq - last - 1])
    return np.concatenate(out, -1)


class SentenceEmbeddingPipeline(Pipeline):
    """``SentenceTransformer(dir).encode(texts)``: [n, dim] float32 for a list, [dim] for one text.
    ``normalize_embeddings=True`` L2-normalizes also without a Normalize module; ``prompt`` /
    ``prompt_name`` (one of ``config_sentence_transformers.json``'s ``prompts``, default its
    ``default_prompt_name``) prefix every text, as in ``encode``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.modes, self.normalize, self.max_seq_length, self.lower = sentence_transformers_modules(self.directory)
        path = self.directory / "config_sentence_transformers.json"
        config = _read_json(path) if path.exists() else {}
        self.prompts: dict[str, str] = config.get("prompts") or {}
        self.default_prompt_name: str | None = config.get("default_prompt_name")

    def _shape(self, inputs: Any, single: bool, results: list[Any], kwargs: dict[str, Any]) -> Any:
        return results[0] if single else np.stack(results) if results else np.zeros((0, 0), np.float32)

    def _run(self, items: list[str], normalize_embeddings: bool = False, prompt_name: str | None = None,
             prompt: str | None = None) -> list[np.ndarray]:
        if prompt is None and prompt_name is not None:
            if prompt_name not in self.prompts:
                raise InputError(f"prompt_name {prompt_name!r} is not one of the checkpoint's prompts {sorted(self.prompts)}")
            prompt = self.prompts[prompt_name]
        elif prompt is None and self.default_prompt_name is not None:
            prompt = self.prompts.get(self.default_prompt_name)
        texts = [(prompt or "") + t for t in items]
        texts = [t.lower() for t in texts] if self.lower else texts
        limit = self.max_seq_length or self.tokenizer.model_max_length
        enc = self._encode(texts, truncation="longest_first", max_length=limit)
        hidden = self._forward(enc)[next(iter(self.model.graph.outputs))]
        emb = pool(hidden, enc["attention_mask"], self.modes)
        if self.normalize or normalize_embeddings:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
        return list(emb.astype(np.float32))


class FillMaskPipeline(Pipeline):
    """transformers' fill-mask: per input the ``top_k`` (default 5) fillings of its mask token
    (``{"score", "token", "token_str", "sequence"}``), one list per mask when it has several."""

    model_task = "masked-lm"

    def _shape(self, inputs: Any, single: bool, results: list[Any], kwargs: dict[str, Any]) -> Any:
        return results[0] if single or len(results) == 1 else results

    def target_ids(self, targets: str | Sequence[str]) -> np.ndarray:
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in [targets] if isinstance(targets, str) else targets:
            found = vocab.get(target)
            if found is None:
                pieces = self.tokenizer(target, add_special_tokens=False, max_length=1, truncation=True)["input_ids"]
                if not len(pieces):
                    continue
                found = pieces[0]
            ids.append(int(found))
        if not ids:
            raise InputError("fill-mask: at least one target must be given (none is in the vocabulary)")
        return np.array(list(set(ids)))

    def _run(self, items: list[str], top_k: int = 5, targets: Any = None,
             tokenizer_kwargs: dict[str, Any] | None = None) -> list[Any]:
        tok = self.tokenizer
        if tok.mask_token_id is None:
            raise ConfigError("fill-mask: the tokenizer has no mask_token")
        enc = self._encode(items, **(tokenizer_kwargs or {}))
        for row in enc["input_ids"]:
            if not (row == tok.mask_token_id).any():
                raise InputError(f"fill-mask: no mask_token ({tok.mask_token}) found on the input")
        logits = self._forward(enc)["logits"].astype(np.float64)
        ids = None if targets is None else self.target_ids(targets)
        k = top_k if ids is None else min(top_k, len(ids))
        results = []
        for row, row_logits in zip(enc["input_ids"], logits):
            masked = np.flatnonzero(row == tok.mask_token_id)
            probs = _softmax(row_logits[masked])
            if ids is not None:
                probs = probs[:, ids]
            single = len(masked) == 1
            per_mask = []
            for i, p in zip(masked, probs):
                fills = []
                for j in np.argsort(-p, kind="stable")[:k]:
                    token = int(j if ids is None else ids[j])
                    filled = row.copy()
                    filled[i] = token
                    filled = filled[filled != tok.pad_token_id]
                    fills.append({"score": float(p[j]), "token": token, "token_str": tok.decode([token]),
                                  "sequence": tok.decode(filled, skip_special_tokens=single)})
                per_mask.append(fills)
            results.append(per_mask[0] if single else per_mask)
        return results


class TextClassificationPipeline(Pipeline):
    """transformers' text-classification: ``{"label", "score"}`` of the best label per input, or the
    ``top_k`` best (None: all) as a list; ``function_to_apply`` ``"sigmoid"`` / ``"softmax"`` / ``"none"``
    (default: none for regression, sigmoid for multi-label or one label, else softmax). Inputs: texts,
    or ``{"text", "text_pair"}`` dicts."""

    model_task = "sequence-classification"

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, str | dict)

    def _shape(self, inputs: Any, single: bool, results: list[Any], kwargs: dict[str, Any]) -> Any:
        if isinstance(inputs, str) and "top_k" not in kwargs:  # as transformers: a top_k given at creation still nests
            return [results[0]]
        return results[0] if single else results

    def _run(self, items: list[Any], top_k: Any = _UNSET, function_to_apply: str | None = None,
             **tokenizer_kwargs: Any) -> list[Any]:
        texts, pairs = [], []
        for item in items:
            if isinstance(item, dict):
                texts.append(item["text"])
                pairs.append(item.get("text_pair"))
            elif isinstance(item, str):
                texts.append(item)
                pairs.append(None)
            else:
                raise InputError('text-classification takes texts, or text pairs as {"text": ..., "text_pair": ...}, '
                                 f"got {type(item).__name__}")
        if any(p is not None for p in pairs) and any(p is None for p in pairs):
            return [r for item in items for r in self._run([item], top_k, function_to_apply,
                                                                         **tokenizer_kwargs)]
        enc = self._encode(texts, pairs if pairs[0] is not None else None, **tokenizer_kwargs)
        logits = self._forward(enc)["logits"].astype(np.float64)
        scores = classification_scores(logits, self.model.config, function_to_apply)
        names = label_names(self.model.config, logits.shape[-1])
        results = []
        for row in scores:
            if top_k is _UNSET:
                best = int(row.argmax())
                results.append({"label": names[best], "score": float(row[best])})
                continue
            ranked = [{"label": names[i], "score": float(row[i])} for i in np.argsort(-row, kind="stable")]
            results.append(ranked if top_k is None else ranked[:top_k])
        return results


class TextGenerationPipeline(Pipeline):
    """transformers' text-generation on a ``causal-lm`` model: per prompt a list of
    ``{"generated_text"}`` (prompt + continuation; ``return_full_text=False``: the continuation only) or
    ``{"generated_token_ids"}`` (``return_tensors=True``). Generation options are `Model.generate`'s;
    the pipeline's defaults are transformers' (256 new tokens, sampling at temperature 0.7) where
    neither the call nor the checkpoint's generation config sets them."""

    model_task = "causal-lm"
    generation_defaults = GENERATION_DEFAULTS

    def _run(self, items: list[str], return_full_text: bool | None = None, return_tensors: bool | None = None,
             return_text: bool | None = None, clean_up_tokenization_spaces: bool | None = None, prefix: Any = None,
             stop_sequence: Any = None, skip_special_tokens: bool | None = None, handle_long_generation: Any = None,
             add_special_tokens: bool | None = None, truncation: Any = None, padding: Any = None,
             max_length: int | None = None, tokenizer_encode_kwargs: dict[str, Any] | None = None,
             **generate_kwargs: Any) -> list[Any]:
        if not all(isinstance(t, str) for t in items):
            raise InputError("text-generation: isoform's pipeline takes prompts as str (no chat messages)")
        if handle_long_generation is not None:
            raise InputError("text-generation: handle_long_generation is not supported")
        if return_full_text is not None and (return_text is not None or return_tensors is not None):
            raise InputError("return_full_text is mutually exclusive with return_text and return_tensors")
        full = return_full_text if return_full_text is not None else True
        tensors = bool(return_tensors) and return_full_text is None and return_text is None
        tk = {k: v for k, v in (("add_special_tokens", add_special_tokens), ("truncation", truncation),
                                ("max_length", max_length)) if v is not None}
        tk.update(tokenizer_encode_kwargs or {})
        if max_length is not None:
            generate_kwargs["max_length"] = max_length
        prefix = prefix if prefix is not None else self._prefix()
        prefix_length = 0
        if prefix:
            prefix_length = len(self.tokenizer(prefix, add_special_tokens=bool(add_special_tokens))["input_ids"])
        if stop_sequence is not None:
            generate_kwargs["stop_strings"] = [stop_sequence] if isinstance(stop_sequence, str) else stop_sequence
            generate_kwargs["tokenizer"] = self.tokenizer
        if len(items) > 1 and self.tokenizer.pad_token_id is None:
            raise InputError("text-generation: batching needs a tokenizer with a pad_token "
                             "(e.g. tokenizer.pad_token = tokenizer.eos_token)")
        texts = [(prefix or "") + t for t in items]
        side = "left" if self.tokenizer.padding_side == "right" else self.tokenizer.padding_side
        enc = self._encode(texts, padding=padding if padding is not None else len(items) > 1, padding_side=side, **tk)
        ids, mask = enc["input_ids"], enc.get("attention_mask")
        out = self.model.generate(ids, attention_mask=mask, **self._generate_options(generate_kwargs, prefix_length))
        out = np.asarray(out).reshape(len(items), -1, np.asarray(out).shape[-1])
        skip = skip_special_tokens if skip_special_tokens is not None else True
        results = []
        for prompt, rows in zip(items, out):
            records = []
            for seq in rows.tolist():
                if tensors:
                    records.append({"generated_token_ids": seq})
                    continue
                text = self.tokenizer.decode(seq[ids.shape[1]:], skip_special_tokens=skip,
                                             clean_up_tokenization_spaces=clean_up_tokenization_spaces)
                records.append({"generated_text": prompt + text if full else text})
            results.append(records)
        return results

    def _prefix(self) -> str | None:
        return self.model.config.extra("prefix")


class Text2TextGenerationPipeline(Pipeline):
    """v4 transformers' text2text-generation (and summarization, translation) on a ``seq2seq-lm`` model:
    per input ``[{"generated_text"}]`` (``summary_text``, ``translation_text``; ``..._token_ids`` with
    ``return_tensors=True``); a list of inputs with one result each gives a flat list of dicts. The
    checkpoint's ``prefix`` and ``task_specific_params[task]`` apply as in transformers, and v4's pipeline
    defaults (256 new tokens, 4 beams) where neither the call nor the checkpoint's generation config sets them."""

    model_task = "seq2seq-lm"
    return_name = "generated"
    generation_defaults = {"max_new_tokens": 256, "num_beams": 4}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        specific = (self.model.config.extra("task_specific_params") or {}).get(self.task) or {}
        self.prefix = specific.get("prefix", self.model.config.extra("prefix"))
        self.defaults = {**{k: v for k, v in specific.items() if k != "prefix"}, **self.defaults}

    def _shape(self, inputs: Any, single: bool, results: list[Any], kwargs: dict[str, Any]) -> Any:
        if single:
            return results[0]
        return [r[0] for r in results] if all(len(r) == 1 for r in results) else results

    def _tokenize(self, texts: list[str], truncation: Any, src_lang: Any, tgt_lang: Any) -> tuple[dict, dict]:
        padding = len(texts) > 1
        return self._encode(texts, padding=padding, truncation=truncation), {}

    def _run(self, items: list[str], return_tensors: bool = False, return_text: bool | None = None,
             clean_up_tokenization_spaces: bool = False, truncation: Any = False, src_lang: Any = None,
             tgt_lang: Any = None, **generate_kwargs: Any) -> list[Any]:
        if not all(isinstance(t, str) for t in items):
            raise InputError(f"{self.task}: inputs must be str or a list of str")
        if len(items) > 1 and self.tokenizer.pad_token_id is None:
            raise InputError(f"{self.task}: batching needs a tokenizer with a pad_token")
        texts = [(self.prefix or "") + t for t in items]
        enc, extra = self._tokenize(texts, truncation, src_lang, tgt_lang)
        out = self.model.generate(enc["input_ids"], attention_mask=enc.get("attention_mask"),
                                  **self._generate_options({**extra, **generate_kwargs}))
        out = np.asarray(out)
        rows = out.reshape(len(items), -1, out.shape[-1])
        key = f"{self.return_name}_token_ids" if return_tensors else f"{self.return_name}_text"
        return [[{key: seq.tolist() if return_tensors else self.tokenizer.decode(
            seq, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces)}
            for seq in per_input] for per_input in rows]


class SummarizationPipeline(Text2TextGenerationPipeline):
    return_name = "summary"


class TranslationPipeline(Text2TextGenerationPipeline):
    """Also ``src_lang`` / ``tgt_lang`` for multilingual tokenizers (mBART, M2M100): the source language
    frames the input and the target language's token is forced first, as transformers'
    ``_build_translation_inputs``. Plain ``translation`` on a checkpoint whose ``task_specific_params``
    name a ``translation_XX_to_YY`` task is that task (its prefix), as v4's ``pipeline()``."""

    return_name = "translation"

    def __init__(self, task: str, model: Any, *args: Any, **kwargs: Any):
        if task == "translation":
            task = next((k for k in model.config.extra("task_specific_params") or {} if k.startswith("translation")),
                        task)
        super().__init__(task, model, *args, **kwargs)
        parts = self.task.split("_")  # translation_en_to_fr
        if len(parts) == 4:
            self.defaults = {"src_lang": parts[1], "tgt_lang": parts[3], **self.defaults}

    def _tokenize(self, texts: list[str], truncation: Any, src_lang: Any, tgt_lang: Any) -> tuple[dict, dict]:
        try:
            self.tokenizer.lang_code_to_id  # noqa: B018  (raises without language codes)
        except TokenizerError:  # languages are for tokenizers that have them (T5 takes them from the prefix)
            src_lang = tgt_lang = None
        if src_lang is None and tgt_lang is None:
            return super()._tokenize(texts, truncation, src_lang, tgt_lang)
        if src_lang is None or tgt_lang is None:
            raise InputError("translation: give both src_lang and tgt_lang")
        self.tokenizer.src_lang = src_lang
        enc = self._encode(texts, padding=len(texts) > 1, truncation=truncation)
        return enc, {"forced_bos_token_id": self.tokenizer.get_lang_id(tgt_lang)}
