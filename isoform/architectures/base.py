"""The architecture protocol: what one model family declares so `Model` can load, run and save it.

An architecture module holds, top to bottom: a pydantic config (unknown keys kept, bad values
rejected naming the key), the backbone written with `isoform.layers`, one head per task, and the
weight map as data. Adding a family is one module that subclasses `Architecture` (or a sibling
family, as RoBERTa does BERT) and calls `register`::

    @register
    class Bert(Architecture):
        model_type = "bert"
        Config = BertConfig
        prefix = "bert."                       # base-model prefix in task checkpoints
        tasks = {None: "BertModel", "masked-lm": "BertForMaskedLM", ...}   # task -> transformers class
        head_patterns = (r"^cls\\.", r"^classifier\\.", ...)   # head tensors to skip when unused

        def backbone(self, ids, mask, token_types, *, pooler): ...   # -> {"last_hidden_state", ...}
        def head(self, task, states, mask): ...                       # -> {"logits": ...}
        def rules(self, task, *, pooler): ...                         # -> [Rename(...), ...]
        def tied(self, task): ...                                     # -> {param: other_param}

Graph parameter names are the Hugging Face names without the model prefix, so the rules are
mostly identity renames; linear weights are transposed (see `isoform.layers.linear`).

`graphs(task, dtype)` returns the named set of graphs a task needs, compiled once by `Model`:
``{"forward"}`` for encoder heads, plus ``"decoder"`` (the one KV-cached prefill/step graph) for a
causal LM, plus ``"encoder"`` and ``"decoder"`` for an encoder-decoder LM. Options that depend on the
checkpoint rather than the config (a bare model's pooler, an untied LM head) are resolved once at
load by `resolve` from the checkpoint's tensor names; after that every graph and the weight map
depend only on config and task.

`input_specs(task)` declares the forward graph's inputs (`isoform.architectures.inputs`): `Model`
validates every call from them once and fills defaults; `check_inputs` adds only the checks specs
cannot state. `build()` (below) writes the encoder framing shared by the BERT family: inputs
``input_ids``, ``attention_mask`` and (when the model has token types) ``token_type_ids`` of shape
[batch, seq] — [batch, choices, seq] for ``multiple-choice``, flattened before the backbone and
un-flattened after the head; further inputs a family declares (LayoutLM's ``bbox``) are passed to
its `backbone` as keyword arguments. Decoder-only (`causal.CausalLM`) and encoder-decoder
(`seq2seq.EncoderDecoder`) families are peer bases that override `build`, `graphs` and `input_specs`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ..errors import ConfigError
from ..ir import Graph, GraphBuilder, Tensor
from ..ir.dtypes import DType, as_dtype
from ..layers import ACTIVATIONS
from ..weights import Rename, Rule, WeightMap
from .inputs import Inputs, InputSpec, Limit, attention_mask, token_ids, zeros_like

TASKS = ("masked-lm", "causal-lm", "seq2seq-lm", "sequence-classification", "token-classification",
         "question-answering", "multiple-choice", "pretraining", "image-classification", "masked-image-modeling", "ctc",
         "audio-classification", "audio-frame-classification", "audio-xvector")


MAX_INT = 2**31 - 1


class ArchConfig(BaseModel):
    """Base of architecture configs: a pydantic model of ``config.json`` that keeps unknown keys
    (``model_dump()`` gives them back, so saving round-trips) and validates the ones it declares."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, protected_namespaces=())

    model_type: str
    id2label: dict[str, Any] | None = None
    tie_word_embeddings: bool = True

    @model_validator(mode="after")
    def _ints_in_range(self) -> ArchConfig:
        """Sizes, counts and ids fit in int32 (what every backend indexes with), so no config value
        can make a build allocate without bound."""
        for key in type(self).model_fields:
            value = getattr(self, key)
            if isinstance(value, int) and not isinstance(value, bool) and not -MAX_INT <= value <= MAX_INT:
                raise ValueError(f"{key} = {value} is out of range (at most {MAX_INT} in magnitude)")
        return self

    @property
    def num_labels(self) -> int:
        """Number of classifier outputs: ``len(id2label)``, else ``num_labels``, else 2 (as transformers)."""
        if self.id2label:
            return len(self.id2label)
        n = (self.model_extra or {}).get("num_labels", 2)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"config key 'num_labels' must be a positive integer, got {n!r}")
        return n

    def layer_counts(self) -> dict[str, int]:
        """The declared keys that count layers (``num_hidden_layers``, ``decoder_layers`` ...), for
        error messages; nested configs prefixed (``text_config.num_hidden_layers``)."""
        counts: dict[str, int] = {}
        for key in type(self).model_fields:
            value = getattr(self, key)
            if isinstance(value, ArchConfig):
                counts.update({f"{key}.{k}": v for k, v in value.layer_counts().items()})
            elif "layer" in key and isinstance(value, int) and not isinstance(value, bool):
                counts[key] = value
        return counts

    def extra(self, key: str, default: Any = None) -> Any:
        """An undeclared config key, or ``default``."""
        return (self.model_extra or {}).get(key, default)

    def number(self, key: str, default: float, low: float = float("-inf"), high: float = float("inf")) -> float:
        """Config key ``key`` (declared or not; None or missing: ``default``) as a float in
        [``low``, ``high``); ConfigError naming the key otherwise."""
        value = getattr(self, key, None)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value < high:
            raise ConfigError(f"config.json: {key} must be a number in [{low}, {high}), got {value!r}")
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        """The config as ``config.json`` data (declared and unknown keys)."""
        return self.model_dump(mode="json")

    def require_multiple(self, size: str, heads: str) -> None:
        """Validator body: ValueError naming both keys unless key ``size`` is a multiple of key ``heads``."""
        a, b = getattr(self, size), getattr(self, heads)
        if a % b:
            raise ValueError(f"{size} ({a}) must be a multiple of {heads} ({b})")


def known_activation(name: str | None) -> str | None:
    """Validator body for ``hidden_act``-like keys: a name of `isoform.layers.ACTIVATIONS` (or None)."""
    if name is not None and name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; supported: {', '.join(sorted(ACTIVATIONS))}")
    return name


def parse_config(cls: type[ArchConfig], data: Mapping[str, Any], source: str = "config.json") -> ArchConfig:
    """Validate ``data`` with ``cls``; ConfigError naming every offending key."""
    try:
        return cls.model_validate(dict(data))
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(config)"
            value = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            problems.append(f"{key}: {err['msg'].removeprefix('Value error, ')}{value}")
        raise ConfigError(f"invalid {source} for model_type {data.get('model_type')!r}: " + "; ".join(problems)) from None


class Architecture:
    """One model family: config class, graph builder, task heads and weight map. See the module doc."""

    model_type: ClassVar[str]
    Config: ClassVar[type[ArchConfig]]
    prefix: ClassVar[str] = ""
    tasks: ClassVar[dict[str | None, str]] = {}
    head_patterns: ClassVar[tuple[str, ...]] = ()
    ignore_patterns: ClassVar[tuple[str, ...]] = (r"(^|\.)position_ids$",)
    padding_safe: ClassVar[bool] = True
    pooler_param: ClassVar[str | None] = None
    generative_task: ClassVar[str | None] = None  # what Model.load(task="text-generation") loads
    checkpoint_classes: ClassVar[dict[str, str]] = {}  # more transformers classes -> the task `resolve` loads them as
    checkpoint_pooler = True  # bare model: build the pooler, unless `resolve` finds the checkpoint lacks it

    def __init__(self, config: ArchConfig):
        self.config = config

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> Architecture:
        return cls(parse_config(cls.Config, data))

    # -- to implement ---------------------------------------------------------------------------
    def backbone(self, ids: Tensor, mask: Tensor, token_types: Tensor | None, *, pooler: bool) -> dict[str, Tensor]:
        raise NotImplementedError

    def head(self, task: str, states: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        raise NotImplementedError

    def tied(self, task: str | None) -> dict[str, str]:
        return {}

    def uses_pooler(self, task: str | None) -> bool:
        """Whether the task's transformers class builds the base model with its pooler."""
        return False

    @property
    def max_length(self) -> int:
        """Longest sequence the position table covers."""
        return int(self.config.max_position_embeddings)

    @property
    def uses_token_types(self) -> bool:
        return int(getattr(self.config, "type_vocab_size", 0) or 0) > 0

    @property
    def pad_id(self) -> int:
        pad = getattr(self.config, "pad_token_id", None)
        return int(pad) if pad is not None else 0

    # -- provided -------------------------------------------------------------------------------
    def check_task(self, task: str | None) -> None:
        if task not in self.tasks:
            valid = ", ".join(repr(t) for t in self.tasks)
            raise ConfigError(f"task {task!r} is not supported by model_type {self.model_type!r}; valid tasks: {valid}")

    def is_padding_safe(self, task: str | None) -> bool:
        """True if appending masked padding tokens leaves the outputs for real tokens unchanged
        (then `Model` pads sequence lengths up to buckets so jitted backends compile less)."""
        return self.padding_safe

    def resolve(self, keys: Collection[str]) -> None:
        """Fix the options that depend on the checkpoint (its tensor ``keys``), once, at load."""
        if self.pooler_param is not None:
            self.checkpoint_pooler = any(k in keys for k in (self.pooler_param, self.prefix + self.pooler_param))

    def has_pooler(self, task: str | None) -> bool:
        """Whether to build the pooler: the task needs it, or (bare model) the checkpoint has it."""
        if self.pooler_param is None:
            return False
        return self.uses_pooler(task) if task is not None else self.checkpoint_pooler

    def input_specs(self, task: str | None) -> Inputs:
        """The forward graph's inputs: ``input_ids``, ``attention_mask`` (default: ones) and, when the
        model has token types, ``token_type_ids`` (default: zeros), [batch, seq] or (``multiple-choice``)
        [batch, choices, seq]."""
        dims = ("batch", "choices", "seq") if task == "multiple-choice" else ("batch", "seq")
        specs = [token_ids("input_ids", dims, int(self.config.vocab_size), self.pad_id), attention_mask(dims, "input_ids")]
        if self.uses_token_types:
            specs.append(InputSpec("token_type_ids", dims, high=int(self.config.type_vocab_size), bound="type_vocab_size",
                                   default=zeros_like("input_ids")))
        return Inputs(specs, limits=self.position_limits(("seq",)))

    def position_limits(self, dims: Collection[str]) -> dict[str, Limit]:
        """``dims`` limited to the position table's length (none when positions are not a table)."""
        if self.max_length is None:
            return {}
        return {d: Limit("sequence length", self.max_length, "max_position_embeddings") for d in dims}

    def graphs(self, task: str | None, dtype: DType | str = "float32") -> dict[str, Graph]:
        """The named graphs ``task`` needs (see the module docstring); encoders: ``{"forward"}``."""
        return {"forward": self.build(task, dtype)}

    def build(self, task: str | None = None, dtype: DType | str = "float32") -> Graph:
        """The forward graph for ``task`` (None = bare model) with float params of ``dtype``."""
        self.check_task(task)
        g = GraphBuilder(f"{self.model_type}:{task or 'base'}", dtype=as_dtype(dtype),
                         metadata={"model_type": self.model_type, "task": task})
        x = {spec.name: spec.declare(g) for spec in self.input_specs(task).specs}
        if task == "multiple-choice":
            x = {n: t.reshape("batch*choices", *t.shape[2:]) for n, t in x.items()}
        ids, mask, types = x.pop("input_ids"), x.pop("attention_mask"), x.pop("token_type_ids", None)
        # any further inputs a family declares (LayoutLM's bbox) reach its backbone by name
        states = self.backbone(ids, mask, types, pooler=self.has_pooler(task), **x)
        outputs = states if task is None else self.head(task, states, mask)
        for name, t in outputs.items():
            if task == "multiple-choice":
                t = t.reshape("batch", "choices")
            g.output(name, t)
        return g.build()

    def weight_map(self, task: str | None) -> WeightMap:
        """How the graph's params are named in a transformers checkpoint of the task's class."""
        return WeightMap(self.rules(task, pooler=self.has_pooler(task)), ignore=[*self.ignore_patterns, *self.head_patterns],
                         tied=self.tied(task), prefix=self.prefix, save_prefix=task is not None)

    def check_inputs(self, inputs: Mapping[str, np.ndarray], task: str | None) -> None:
        """Checks the input specs cannot express (InputError naming the input), after the specs'."""


def same(*names: str, prefixed: bool = True) -> list[Rule]:
    """Identity rules: each checkpoint tensor is the graph parameter of the same name."""
    return [Rename(n, n, prefixed=prefixed) for n in names]


def norm_rules(*names: str, prefixed: bool = True) -> list[Rule]:
    """Identity rules for the ``weight`` and ``bias`` of norm layers."""
    return same(*(f"{n}.{p}" for n in names for p in ("weight", "bias")), prefixed=prefixed)


# -- registry ----------------------------------------------------------------------------------------
REGISTRY: dict[str, type[Architecture]] = {}


def register(cls: type[Architecture]) -> type[Architecture]:
    """Class decorator adding an architecture under its ``model_type``."""
    if REGISTRY.get(cls.model_type, cls) is not cls:
        raise ConfigError(f"model_type {cls.model_type!r} is registered twice")
    REGISTRY[cls.model_type] = cls
    return cls


def supported() -> list[str]:
    """Every registered ``model_type``, sorted."""
    return sorted(REGISTRY)


def read_config(directory: Path) -> dict[str, Any]:
    """The JSON object in ``directory/config.json`` (ConfigError if missing or unreadable)."""
    path = Path(directory) / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{directory} has no config.json") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def architecture_for(config: Mapping[str, Any]) -> Architecture:
    """The architecture instance for a ``config.json`` mapping (ConfigError if unknown or invalid)."""
    return get(config.get("model_type")).from_config(config)


def get(model_type: object) -> type[Architecture]:
    """The architecture registered for ``model_type``; ConfigError listing the supported ones."""
    if not isinstance(model_type, str) or model_type not in REGISTRY:
        what = "config.json has no 'model_type'" if model_type is None else f"unknown model_type {model_type!r}"
        raise ConfigError(f"{what}; supported model types: {', '.join(supported())}")
    return REGISTRY[model_type]
