"""The `Pipeline` base (batching, nesting of single vs list inputs, encode + forward) and small helpers
shared by the task modules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError

_UNSET: Any = object()
#: transformers' GenerationConfig defaults: a checkpoint value equal to one counts as not set (``to_diff_dict``)
HF_GENERATION_DEFAULTS = {"max_length": 20, "do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0}
SAMPLING = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None


def label_names(config: Any, n: int) -> list[str]:
    """``id2label`` names of ``n`` classes (``LABEL_i`` where the config has none), as transformers."""
    id2label = config.id2label or {}
    return [id2label.get(str(i), id2label.get(i, f"LABEL_{i}")) for i in range(n)]


def classification_scores(logits: np.ndarray, config: Any, function_to_apply: Any = None) -> np.ndarray:
    """Class scores of classifier ``logits`` [..., labels], as transformers' classification pipelines:
    ``function_to_apply`` ``"sigmoid"`` / ``"softmax"`` / ``"none"``, by default none for regression,
    sigmoid for multi-label or one-label heads, else softmax."""
    if function_to_apply is not None:
        name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
        if name not in ("sigmoid", "softmax", "none"):
            raise InputError(f"function_to_apply must be 'sigmoid', 'softmax' or 'none', got {function_to_apply!r}")
    else:
        problem = config.extra("problem_type")
        name = "none" if problem == "regression" else "sigmoid" if (
            problem == "multi_label_classification" or logits.shape[-1] == 1) else "softmax"
    return {"sigmoid": _sigmoid, "softmax": _softmax, "none": lambda x: x}[name](logits)


class Pipeline:
    """One task on one model and its preprocessor (a `Tokenizer`, `ImageProcessor` or `Processor`, as
    ``preprocessor`` says); call it on one input or a list of inputs."""

    model_task: str | None = None  # the task the model is loaded with
    preprocessor = "tokenizer"  # what `isoform.pipeline` loads from the directory: tokenizer, image or processor
    generation_defaults: dict[str, Any] = {}  # the pipeline's generate() defaults (transformers' _default_generation_config)

    def __init__(self, task: str, model: Any, processor: Any, directory: Path | None = None, *, batch_size: int = 1,
                 **defaults: Any):
        self.task, self.model, self.processor, self.directory = task, model, processor, directory
        self.tokenizer = processor if self.preprocessor == "tokenizer" else getattr(processor, "tokenizer", None)
        self.batch_size = _check_batch_size(batch_size)
        self.defaults = defaults
        self._names = {s.name for s in model.inputs.specs}

    @classmethod
    def model_tasks(cls) -> tuple[str | None, ...]:
        """The model tasks this pipeline runs on (a loaded `Model` must have one of them)."""
        return (cls.model_task,)

    @classmethod
    def task_for(cls, directory: Path) -> str | None:
        """The task to load the checkpoint in ``directory`` with."""
        return cls.model_task

    def __repr__(self) -> str:
        return f"<isoform.Pipeline {self.task!r} model={self.model!r}>"

    def __call__(self, inputs: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        options = {**self.defaults, **kwargs}
        size = _check_batch_size(self.batch_size if batch_size is None else batch_size)
        single = self._is_single(inputs)
        items = [inputs] if single else list(inputs)
        if not items:
            return self._shape(inputs, single, [], kwargs)
        results = [r for chunk in _chunks(items, size) for r in self._run(chunk, **options)]
        return self._shape(inputs, single, results, kwargs)

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, str)

    def _shape(self, inputs: Any, single: bool, results: list[Any], kwargs: dict[str, Any]) -> Any:
        """The call's result from the per-input ``results`` (``kwargs``: the call's own options)."""
        return results[0] if single else results

    def _run(self, items: list[Any], **options: Any) -> list[Any]:
        raise NotImplementedError

    def _encode(self, texts: Any, pairs: Any = None, **tokenizer_kwargs: Any) -> dict[str, np.ndarray]:
        padding = tokenizer_kwargs.pop("padding", True)
        enc = self.tokenizer(texts, pairs, padding=padding, return_tensors="np", **tokenizer_kwargs)
        return {k: np.asarray(v) for k, v in enc.items()}

    def _forward(self, enc: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.model(**{k: v for k, v in enc.items() if k in self._names}).numpy()

    def _generate_options(self, options: dict[str, Any], prefix_length: int = 0) -> dict[str, Any]:
        """generate()'s options: the call's, then the pipeline's ``generation_defaults`` for what neither
        the call nor the checkpoint's generation config sets (sampling ones only when sampling), as
        transformers' ``_prepare_generate_kwargs``; ``max_length`` counts a ``prefix_length`` prefix."""
        base = self.model.generation_config
        given = {k: v for k, v in (base.model_dump() if base is not None else {}).items()
                 if v is not None and (k not in HF_GENERATION_DEFAULTS or v != HF_GENERATION_DEFAULTS[k])}
        set_params = {**given, **options}
        added = {k: v for k, v in self.generation_defaults.items()
                 if k not in set_params and not (k == "max_new_tokens" and "max_length" in set_params)}
        if not {**set_params, **added}.get("do_sample"):
            added = {k: v for k, v in added.items() if k not in SAMPLING}
        if "pad_token_id" not in set_params and self.tokenizer.pad_token_id is not None:
            added["pad_token_id"] = self.tokenizer.pad_token_id
        out = {**options, **added}
        if prefix_length:
            for length, new in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens")):
                if length in set_params and new not in set_params:
                    out[length] = set_params[length] + prefix_length
        return out
