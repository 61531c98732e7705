"""``isoform.pipeline(task, model=...)``: transformers' ``pipeline()`` on isoform models, tokenizers,
processors and ``generate``, with the same outputs (labels, token ids and strings, offsets, scores, nesting).

    fill = isoform.pipeline("fill-mask", model="./bert-ckpt", backend="jax")
    fill("Paris is the [MASK] of France.", top_k=3)        # [{"score", "token", "token_str", "sequence"}, ...]
    ner = isoform.pipeline("ner", model="./ner-ckpt", aggregation_strategy="simple")
    ner("Ada lives in Paris")                              # [{"entity_group", "score", "word", "start", "end"}, ...]
    embed = isoform.pipeline("sentence-embedding", model="sentence-transformers/all-MiniLM-L6-v2")
    embed(["a sentence", "another one"])                   # as SentenceTransformer(dir).encode(texts)

Tasks (modules): text — ``feature-extraction``, ``sentence-embedding`` (not a transformers pipeline: the
checkpoint's sentence-transformers modules, Transformer -> Pooling -> Normalize), ``fill-mask``,
``text-classification`` (alias ``sentiment-analysis``), ``text-generation``, and the seq2seq
``text2text-generation``, ``summarization``, ``translation``; tokens — ``token-classification`` (alias
``ner``), ``question-answering``; zero_shot — ``zero-shot-classification``,
``zero-shot-image-classification``; vision — ``image-classification``; audio —
``automatic-speech-recognition``. transformers v5 dropped text2text-generation, summarization, translation
and question-answering: for those the outputs are those of v4's pipelines.

A list of inputs runs in batches of ``batch_size`` (padded as transformers' pipelines pad: right, left
for decoder-only generation); a single input gives a single result. Not covered: chat inputs,
``handle_long_generation``, sentence-transformers Dense modules, pre-split words
(``is_split_into_words``), ASR chunking (``chunk_length_s``) and timestamps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .audio import AutomaticSpeechRecognitionPipeline
from .base import Pipeline
from .text import (
    FeatureExtractionPipeline,
    FillMaskPipeline,
    SentenceEmbeddingPipeline,
    SummarizationPipeline,
    Text2TextGenerationPipeline,
    TextClassificationPipeline,
    TextGenerationPipeline,
    TranslationPipeline,
)
from .tokens import QuestionAnsweringPipeline, TokenClassificationPipeline
from .vision import ImageClassificationPipeline
from .zero_shot import ZeroShotClassificationPipeline, ZeroShotImageClassificationPipeline

PIPELINES: dict[str, type[Pipeline]] = {
    "feature-extraction": FeatureExtractionPipeline,
    "sentence-embedding": SentenceEmbeddingPipeline,
    "fill-mask": FillMaskPipeline,
    "text-classification": TextClassificationPipeline,
    "text-generation": TextGenerationPipeline,
    "text2text-generation": Text2TextGenerationPipeline,
    "summarization": SummarizationPipeline,
    "translation": TranslationPipeline,
    "token-classification": TokenClassificationPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "zero-shot-classification": ZeroShotClassificationPipeline,
    "zero-shot-image-classification": ZeroShotImageClassificationPipeline,
    "image-classification": ImageClassificationPipeline,
    "automatic-speech-recognition": AutomaticSpeechRecognitionPipeline,
}
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}


def pipeline(task: str, model: Any, backend: str = "numpy", tokenizer: Any = None, *, dtype: Any = "float32",
             device: Any = None, batch_size: int = 1, model_kwargs: dict[str, Any] | None = None,
             **kwargs: Any) -> Pipeline:
    """A callable for ``task`` on ``model`` (local directory, isoform alias or hub id, loaded onto
    ``backend``; or a `Model` loaded for the pipeline's task, with ``tokenizer`` given).

    ``tokenizer``: the pipeline's preprocessor (a `Tokenizer`; an `ImageProcessor` for image-classification,
    a `Processor` for zero-shot-image-classification and speech recognition) or the directory to load it
    from (default: the model's directory). ``model_kwargs`` go to `Model.load`; other keyword arguments are
    defaults of every call (a call's own override them), as in transformers (e.g. ``top_k=3``)."""
    from ..hub import resolve
    from ..model import Model

    name = ALIASES.get(task, task)
    name = "translation" if name.startswith("translation_") else name
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline task {task!r}; isoform has {sorted(PIPELINES)}")
    cls = PIPELINES[name]
    if isinstance(model, Model):  # loaded already: its task must be the pipeline's, the tokenizer given
        if model.task not in cls.model_tasks():
            wanted = " or ".join(f"task={t!r}" for t in cls.model_tasks())
            raise ConfigError(f"pipeline {task!r} needs a model loaded with {wanted}, this one has task={model.task!r}")
        if tokenizer is None or cls is SentenceEmbeddingPipeline:
            raise ConfigError(f"pipeline {task!r} on a loaded Model needs tokenizer= (sentence-embedding: pass the "
                              "checkpoint's directory, whose sentence-transformers files it reads)")
        loaded, directory = model, None
    else:
        directory = Path(resolve(model))
        loaded = Model.load(directory, backend=backend, task=cls.task_for(directory), dtype=dtype, device=device,
                            **(model_kwargs or {}))
    given = tokenizer is not None and not isinstance(tokenizer, str | os.PathLike)
    processor = tokenizer if given else load_preprocessor(cls.preprocessor, tokenizer if tokenizer is not None
                                                          else directory)
    return cls(task, loaded, processor, directory, batch_size=batch_size, **kwargs)


def load_preprocessor(kind: str, directory: Any) -> Any:
    """The `Tokenizer`, `ImageProcessor` or `Processor` (``kind``) of a checkpoint directory."""
    if kind == "tokenizer":
        from ..tokenizer import Tokenizer

        return Tokenizer.load(directory)
    from ..processing import ImageProcessor, Processor

    return ImageProcessor.load(directory) if kind == "image" else Processor.load(directory)


__all__ = ["PIPELINES", "Pipeline", "pipeline"]
