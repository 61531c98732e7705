"""Pipelines that answer with spans of the input text: token-classification (NER) and extractive
question-answering, with character offsets from the tokenizer's offset mapping."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .base import Pipeline, _softmax, label_names

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def _aggregation(strategy: Any) -> str:
    name = str(getattr(strategy, "value", strategy)).lower()
    if name not in AGGREGATIONS:
        raise InputError(f"aggregation_strategy must be one of {AGGREGATIONS}, got {strategy!r}")
    return name


def _tag(label: str) -> tuple[str, str]:
    """(B or I, entity) of a label; one without a ``B-`` / ``I-`` prefix continues (I)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


class TokenClassificationPipeline(Pipeline):
    """transformers' token-classification (``ner``): per text a list of entities. ``aggregation_strategy``
    ``"none"`` (default) gives every token not in ``ignore_labels`` (default ``["O"]``) as ``{"entity",
    "score", "index", "word", "start", "end"}``; ``"simple"`` groups adjacent tokens of one entity, and
    ``"first"`` / ``"average"`` / ``"max"`` first make each word agree on one label, as ``{"entity_group",
    "score", "word", "start", "end"}``. ``stride``: texts longer than the model's context run in
    overlapping windows whose entities are merged (not with ``"none"``)."""

    model_task = "token-classification"

    def _run(self, items: list[str], aggregation_strategy: Any = "none", ignore_labels: list[str] | None = None,
             stride: int | None = None) -> list[list[dict[str, Any]]]:
        if not all(isinstance(t, str) for t in items):
            raise InputError("token-classification takes texts (str) or a list of texts")
        strategy = _aggregation(aggregation_strategy)
        tok = self.tokenizer
        limit = tok.model_max_length
        extra: dict[str, Any] = {}
        if stride is not None:
            if stride >= limit:
                raise InputError(f"stride ({stride}) must be less than the tokenizer's model_max_length ({limit})")
            if strategy == "none":
                raise InputError('stride merges windows by entity: pass an aggregation_strategy other than "none"')
            extra = {"return_overflowing_tokens": True, "stride": stride}
        enc = tok(items, padding=True, truncation=bool(limit and limit > 0), return_tensors="np",
                  return_special_tokens_mask=True, return_offsets_mapping=True, **extra)
        rows = np.asarray(enc.pop("overflow_to_sample_mapping", np.arange(len(items))))
        logits = self._forward(dict(enc))["logits"].astype(np.float32)
        names = label_names(self.model.config, logits.shape[-1])
        ignored = ["O"] if ignore_labels is None else list(ignore_labels)
        results: list[list[dict[str, Any]]] = [[] for _ in items]
        for r, sample in enumerate(rows):
            pre = self._pre_entities(items[sample], enc["input_ids"][r], _softmax(logits[r]),
                                     enc["offset_mapping"][r], enc["special_tokens_mask"][r])
            entities = self._aggregate(pre, strategy, names)
            results[sample].extend(e for e in entities if e.get("entity", e.get("entity_group")) not in ignored)
        return [_merge_overlapping(found) if (rows == i).sum() > 1 else found for i, found in enumerate(results)]

    def _pre_entities(self, sentence: str, ids: np.ndarray, scores: np.ndarray, offsets: np.ndarray,
                      special: np.ndarray) -> list[dict[str, Any]]:
        """The text's tokens with their scores, offsets and whether each continues a word: by the
        tokenizer's subword prefix (WordPiece ``##``) when it has one, else transformers' heuristic (no
        space before it)."""
        tok = self.tokenizer
        word_aware = getattr(getattr(tok.backend, "model", None), "continuing_subword_prefix", None)
        out = []
        for idx, token_scores in enumerate(scores):
            if special[idx]:
                continue
            word = tok.convert_ids_to_tokens(int(ids[idx]))
            start, end = int(offsets[idx][0]), int(offsets[idx][1])
            ref = sentence[start:end]
            if word_aware:
                is_subword = len(word) != len(ref)
            else:
                is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
            if int(ids[idx]) == tok.unk_token_id:
                word, is_subword = ref, False
            out.append({"word": word, "scores": token_scores, "start": start, "end": end, "index": idx,
                        "is_subword": is_subword})
        return out

    def _aggregate(self, pre: list[dict[str, Any]], strategy: str, names: list[str]) -> list[dict[str, Any]]:
        if strategy in ("none", "simple"):
            entities = []
            for p in pre:
                best = int(p["scores"].argmax())
                entities.append({"entity": names[best], "score": float(p["scores"][best]), "index": p["index"],
                                 "word": p["word"], "start": p["start"], "end": p["end"]})
            if strategy == "none":
                return entities
        else:
            words: list[list[dict[str, Any]]] = []
            for p in pre:
                if words and p["is_subword"]:
                    words[-1].append(p)
                else:
                    words.append([p])
            entities = [self._word(group, strategy, names) for group in words]
        return self._group(entities)

    def _tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self.tokenizer.backend.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def _word(self, tokens: list[dict[str, Any]], strategy: str, names: list[str]) -> dict[str, Any]:
        """One word's label from its tokens' scores: the first token's, the most confident token's, or the
        average over the tokens."""
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda t: t["scores"].max())["scores"]
        else:
            scores = np.nanmean(np.stack([t["scores"] for t in tokens]), axis=0)
        best = int(scores.argmax())
        return {"entity": names[best], "score": float(scores[best]),
                "word": self._tokens_to_string([t["word"] for t in tokens]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def _group(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Adjacent entities of one type (a ``B-`` starts a new one) merged: mean score, joined words."""
        groups: list[list[dict[str, Any]]] = []
        for entity in entities:
            bi, tag = _tag(entity["entity"])
            if groups and tag == _tag(groups[-1][-1]["entity"])[1] and bi != "B":
                groups[-1].append(entity)
            else:
                groups.append([entity])
        return [{"entity_group": g[0]["entity"].split("-", 1)[-1],
                 "score": float(np.mean(np.nanmean([e["score"] for e in g]))),
                 "word": self._tokens_to_string([e["word"] for e in g]), "start": g[0]["start"], "end": g[-1]["end"]}
                for g in groups]


def _merge_overlapping(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities of overlapping windows: of two that overlap, the longer (then the more confident) stays."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    merged, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


class QuestionAnsweringPipeline(Pipeline):
    """v4 transformers' question-answering (v5 dropped it): ``qa(question=..., context=...)``, a
    ``{"question", "context"}`` dict or a list of them; per question the best ``top_k`` (default 1)
    answer spans of its context as ``{"score", "start", "end", "answer"}`` (a dict when one answer,
    else a list). Contexts longer than ``max_seq_len`` (default ``min(model_max_length, 384)``) run in
    windows overlapping by ``doc_stride`` tokens (default ``min(max_seq_len // 2, 128)``); answers are at
    most ``max_answer_len`` (15) tokens, aligned to whole words unless ``align_to_words=False``; spans
    giving the same answer text (case-insensitive, from any window) are one answer whose score is the sum
    of theirs, as v4.57; ``handle_impossible_answer=True`` also scores the empty answer (the [CLS] position)."""

    model_task = "question-answering"

    def __call__(self, *args: Any, question: Any = None, context: Any = None, batch_size: int | None = None,
                 **kwargs: Any) -> Any:
        if question is not None or context is not None:
            if args or question is None or context is None:
                raise InputError("question-answering: pass question= and context= together, or the examples alone")
            if isinstance(question, str) and isinstance(context, str):
                inputs: Any = {"question": question, "context": context}
            elif isinstance(question, list | tuple) and isinstance(context, str):
                inputs = [{"question": q, "context": context} for q in question]
            elif isinstance(question, list | tuple) and isinstance(context, list | tuple) and len(question) == len(context):
                inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
            else:
                raise InputError("question-answering: question and context must be str, a list of questions with one "
                                 "context, or two lists of the same length")
        elif len(args) == 1:
            inputs = args[0]
        else:
            raise InputError("question-answering takes one argument (an example or a list of them) or question=, context=")
        if isinstance(inputs, list | tuple) and len(inputs) == 1:  # as transformers: a one-example list answers as one
            inputs = inputs[0]
        return super().__call__(inputs, batch_size=batch_size, **kwargs)

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, dict)

    def _run(self, items: list[Any], top_k: int = 1, doc_stride: int | None = None, max_answer_len: int = 15,
             max_seq_len: int | None = None, handle_impossible_answer: bool = False,
             align_to_words: bool = True) -> list[Any]:
        if top_k < 1:
            raise InputError(f"top_k must be >= 1, got {top_k}")
        if max_answer_len < 1:
            raise InputError(f"max_answer_len must be >= 1, got {max_answer_len}")
        max_seq_len = min(self.tokenizer.model_max_length, 384) if max_seq_len is None else max_seq_len
        doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
        if doc_stride > max_seq_len:
            raise InputError(f"doc_stride ({doc_stride}) must be at most max_seq_len ({max_seq_len})")
        examples = [self._example(item) for item in items]
        spans = [self._spans(q, c, max_seq_len, doc_stride) for q, c in examples]
        features = [f for per_example in spans for f in per_example]
        width = max(len(f["input_ids"]) for f in features)
        pad = self.tokenizer.pad_token_id or 0
        batch = {k: np.array([f[k] + [pad if k == "input_ids" else 0] * (width - len(f[k])) for f in features])
                 for k in ("input_ids", "attention_mask", "token_type_ids") if k in features[0]}
        out = self._forward(batch)
        starts, ends = out["start_logits"].astype(np.float32), out["end_logits"].astype(np.float32)
        candidates = top_k * 2 + 10 if align_to_words else top_k  # spans aligned to one word answer as one
        results, row = [], 0
        for (_, context), per_example in zip(examples, spans):
            answers, null = [], 1000000.0
            for f in per_example:
                n = len(f["input_ids"])
                chosen, null = _best_spans(starts[row, :n], ends[row, :n], f["p_mask"], null, candidates,
                                           handle_impossible_answer, max_answer_len)
                row += 1
                for s, e, score in chosen:
                    start, end = _chars(f["encoding"], s, e, f["context_index"], align_to_words)
                    text = context[start:end]
                    same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                    if same is None:
                        answers.append({"score": score, "start": start, "end": end, "answer": text})
                    else:  # the same answer from another span or window: v4 adds the scores
                        same["score"] += score
            if handle_impossible_answer:
                answers.append({"score": null, "start": 0, "end": 0, "answer": ""})
            answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
            results.append(answers[0] if len(answers) == 1 else answers)
        return results

    @staticmethod
    def _example(item: Any) -> tuple[str, str]:
        if not isinstance(item, dict) or not {"question", "context"} <= item.keys():
            raise InputError('question-answering: each example must be a dict with "question" and "context", '
                             f"got {item!r:.80}")
        question, context = item["question"], item["context"]
        for name, value in (("question", question), ("context", context)):
            if not isinstance(value, str):
                raise InputError(f"question-answering: {name} must be a str, got {type(value).__name__}")
            if not value:
                raise InputError(f"question-answering: {name} cannot be empty")
        return question, context

    def _spans(self, question: str, context: str, max_seq_len: int, doc_stride: int) -> list[dict[str, Any]]:
        """The context's windows, each with its ids, the mask of what cannot be in an answer (``p_mask``:
        everything but the context, the [CLS] token excepted) and its ``tokenizers`` encoding."""
        tok = self.tokenizer
        first = tok.padding_side == "right"  # the question first, as transformers
        enc = tok(question if first else context, context if first else question, padding=False,
                  truncation="only_second" if first else "only_first", max_length=max_seq_len, stride=doc_stride,
                  return_token_type_ids=True, return_overflowing_tokens=True, return_offsets_mapping=True)
        spans = []
        for i, ids in enumerate(enc["input_ids"]):
            p_mask = [int(s != 1) if first else 0 for s in enc.sequence_ids(i)]
            for j, token in enumerate(ids):
                if tok.cls_token_id is not None and token == tok.cls_token_id:
                    p_mask[j] = 0
            spans.append({"input_ids": list(ids), "attention_mask": list(enc["attention_mask"][i]),
                          "token_type_ids": list(enc["token_type_ids"][i]), "p_mask": p_mask,
                          "encoding": enc.encodings[i], "context_index": 1 if first else 0})
        return spans



def _chars(encoding: Any, s: int, e: int, index: int, align_to_words: bool) -> tuple[int, int]:
    """Character span of tokens ``s..e`` in the context (sequence ``index``): of the whole words they fall
    in, else the tokens' own offsets."""
    if align_to_words:
        words = encoding.token_to_word(s), encoding.token_to_word(e)
        if None not in words:
            first, last = (encoding.word_to_chars(w, sequence_index=index) for w in words)
            if first is not None and last is not None:
                return first[0], last[1]
    return encoding.offsets[s][0], encoding.offsets[e][1]


def _best_spans(start: np.ndarray, end: np.ndarray, p_mask: list[int], null: float, top_k: int,
                impossible: bool, max_answer_len: int) -> tuple[list[tuple[int, int, float]], float]:
    """The ``top_k`` (start, end, score) spans of one window (score: product of the start and end
    probabilities over the allowed tokens, spans of at most ``max_answer_len`` tokens), and the
    least no-answer score so far (``null``)."""
    allowed = np.asarray(p_mask) == 0
    start = _softmax(np.where(allowed, start, -10000.0))
    end = _softmax(np.where(allowed, end, -10000.0))
    if impossible:
        null = min(null, float(start[0] * end[0]))
    start[0] = end[0] = 0.0
    candidates = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    flat = candidates.ravel()
    order = [int(np.argmax(flat))] if top_k == 1 else np.argsort(-flat, kind="stable")[:top_k]
    chosen = []
    for i in order:
        s, e = divmod(int(i), candidates.shape[1])
        if allowed[s] and allowed[e]:
            chosen.append((s, e, float(candidates[s, e])))
    return chosen, null
