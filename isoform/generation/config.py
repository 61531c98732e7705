"""`GenerationConfig`: the decoding options of ``generate``, with transformers' names and defaults.

Precedence, as in transformers: keyword arguments of ``generate`` > ``generation_config.json`` of the
checkpoint (or, without one, the generation keys of ``config.json``: ``bos_token_id``,
``eos_token_id``, ``pad_token_id``, ...) > the global defaults (`DEFAULTS`). Unknown keys in the
files are kept and ignored (``transformers_version``, ``use_cache``, ...); unknown keyword arguments
are errors. Options transformers has but isoform does not implement are errors when set to a value
that would change the result (`UNSUPPORTED`), never silently ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from ..errors import ConfigError, InputError
from ..staging import write_text

#: transformers' ``GenerationConfig._get_default_generation_params`` for the options isoform implements.
DEFAULTS: dict[str, Any] = {
    "max_length": 20, "min_length": 0, "do_sample": False, "early_stopping": False, "num_beams": 1,
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
    "num_return_sequences": 1, "return_dict_in_generate": False, "output_scores": False, "output_logits": False,
}

#: The value of each default option that disables it (what transformers does with ``None``).
OFF: dict[str, Any] = {**DEFAULTS, "top_k": 0}

#: transformers options isoform does not implement, with the values under which they do nothing.
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "num_beam_groups": (None, 1), "diversity_penalty": (None, 0.0), "penalty_alpha": (None, 0.0),
    "top_h": (None,), "bad_words_ids": (None, []), "force_words_ids": (None, []), "constraints": (None, []),
    "sequence_bias": (None, {}), "suppress_tokens": (None, []), "begin_suppress_tokens": (None, []),
    "exponential_decay_length_penalty": (None,), "guidance_scale": (None, 1.0), "encoder_repetition_penalty": (None, 1.0),
    "renormalize_logits": (None, False), "max_time": (None,),
    "dola_layers": (None,), "prompt_lookup_num_tokens": (None,), "watermarking_config": (None,),
    "token_healing": (None, False), "low_memory": (None, False),
    "output_attentions": (None, False), "output_hidden_states": (None, False),
}

#: A special token id as transformers takes it: any int64 (ids outside the vocabulary, negative ones
#: included, are accepted and never match a generated token, as transformers ignores them).
TokenId = Annotated[StrictInt, Field(ge=-(2**63), lt=2**63)]
TokenIds = TokenId | list[TokenId]


def _number(value: Any) -> Any:
    """A float option: an int or float (NumPy's too), not a bool or a string; finite (checked by the field)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError("Input should be a number")
    try:
        return float(value)
    except OverflowError:
        raise ValueError("Input should be a finite number") from None


Number = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]


class GenerationConfig(BaseModel):
    """Decoding options (transformers' names; ``None`` = not set here, see the module docstring).
    Field constraints are checked on construction; `resolve` applies kwargs and defaults and checks
    the options against each other."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, protected_namespaces=())

    max_new_tokens: StrictInt | None = Field(None, gt=0)
    max_length: StrictInt | None = Field(None, gt=0)
    min_new_tokens: StrictInt | None = Field(None, ge=0)
    min_length: StrictInt | None = Field(None, ge=0)
    do_sample: StrictBool | None = None
    temperature: Number | None = None
    top_k: StrictInt | None = Field(None, ge=0)
    top_p: Number | None = Field(None, gt=0.0, le=1.0)
    # the ranges transformers' warpers accept (1.0 / 0.0 = off, as transformers; min_p: None = off)
    min_p: Number | None = Field(None, ge=0.0, le=1.0)
    typical_p: Number | None = Field(None, gt=0.0, le=1.0)
    epsilon_cutoff: Number | None = Field(None, ge=0.0, lt=1.0)
    eta_cutoff: Number | None = Field(None, ge=0.0, lt=1.0)
    num_beams: StrictInt | None = Field(None, ge=1)
    length_penalty: Number | None = None
    early_stopping: StrictBool | Literal["never"] | None = None
    num_return_sequences: StrictInt | None = Field(None, ge=1)
    repetition_penalty: Number | None = Field(None, gt=0.0)
    no_repeat_ngram_size: StrictInt | None = Field(None, ge=0)
    encoder_no_repeat_ngram_size: StrictInt | None = Field(None, ge=0)
    bos_token_id: TokenId | None = None
    eos_token_id: TokenIds | None = None
    pad_token_id: TokenId | None = None
    decoder_start_token_id: StrictInt | None = Field(None, ge=0)
    forced_bos_token_id: StrictInt | None = Field(None, ge=0)
    forced_eos_token_id: TokenIds | None = None
    stop_strings: str | list[str] | None = None
    return_dict_in_generate: StrictBool | None = None
    output_scores: StrictBool | None = None
    output_logits: StrictBool | None = None

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str, error: type[Exception] = ConfigError) -> GenerationConfig:
        """Validate ``data``; ``error`` (ConfigError / InputError) names every offending key."""
        try:
            config = cls.model_validate(dict(data))
        except ValidationError as e:
            problems = []
            for err in e.errors():
                key = ".".join(str(p) for p in err["loc"]).replace("constrained-int", "int")
                problems.append(f"{key}: {err['msg'].removeprefix('Value error, ')} (got {err['input']!r})")
            raise error(f"invalid {source}: " + "; ".join(problems)) from None
        bad = {k: v for k, v in (config.model_extra or {}).items() if k in UNSUPPORTED and v not in UNSUPPORTED[k]}
        if bad:
            raise error(f"{source} sets generation option(s) isoform does not implement: "
                        + ", ".join(f"{k}={v!r}" for k, v in bad.items()))
        return config

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> GenerationConfig:
        """The generation keys of a ``config.json`` mapping (transformers' ``from_model_config``)."""
        keys = {k: v for k, v in config.items() if k in cls.model_fields and v is not None}
        return cls.parse(keys, "generation keys of config.json")

    @classmethod
    def load(cls, directory: str | Path, model_config: Mapping[str, Any]) -> GenerationConfig:
        """``directory/generation_config.json`` if it exists, else `from_model_config`."""
        path = Path(directory) / "generation_config.json"
        if not path.exists():
            return cls.from_model_config(model_config)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        return cls.parse(data, str(path))

    @classmethod
    def coerce(cls, value: Any) -> GenerationConfig:
        """``generate(generation_config=...)``: an isoform or ``transformers.GenerationConfig`` or a dict
        (InputError naming a bad value; unknown keys are kept and ignored, as in generation_config.json).
        Only the options it sets count (transformers v5 leaves the others None): `update` puts them over
        the model's own config, as transformers merges them."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            data = dict(value)
        elif callable(getattr(value, "to_dict", None)) and type(value).__module__.startswith("transformers."):
            data = value.to_dict()
        else:
            raise InputError(f"generation_config must be an isoform or transformers GenerationConfig or a dict, "
                             f"got {type(value).__name__}")
        return cls.parse({k: v for k, v in data.items() if v is not None}, "generation_config", InputError)

    def update(self, other: GenerationConfig) -> GenerationConfig:
        """A copy of this config with the options ``other`` sets (not None) over it."""
        data = {k: v for k, v in self.model_dump().items() if v is not None}
        return type(self).model_validate({**data, **{k: v for k, v in other.model_dump().items() if v is not None}})

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/generation_config.json`` (the keys that are set); returns its path."""
        return write_text(Path(directory) / "generation_config.json",
                          json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2) + "\n")

    # -- resolution -------------------------------------------------------------------------------
    def resolve(self, **kwargs: Any) -> GenerationConfig:
        """A copy with ``kwargs`` (``generate``'s options) over this config over `DEFAULTS`, the pad
        token defaulted to the first eos token (as transformers), checked as a whole (InputError)."""
        unknown = sorted(set(kwargs) - set(type(self).model_fields) - set(UNSUPPORTED))
        if unknown:
            raise InputError(f"unknown generation option(s) {unknown}; known: {sorted(type(self).model_fields)}")
        given = type(self).parse(kwargs, "generate() arguments", InputError)
        data = {**DEFAULTS, **{k: v for k, v in self.model_dump().items() if v is not None},
                **given.model_dump(exclude_unset=True)}
        data.update({k: v for k, v in OFF.items() if data[k] is None})  # an explicit None turns an option off
        config = type(self).model_validate(data)
        if config.pad_token_id is None and config.eos_ids:
            config.pad_token_id = config.eos_ids[0]
        config._check()
        return config

    @property
    def eos_ids(self) -> list[int]:
        """``eos_token_id`` as a list (empty when unset)."""
        eos = self.eos_token_id
        return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)

    @property
    def stop_list(self) -> list[str]:
        """``stop_strings`` as a list (empty when unset)."""
        stops = self.stop_strings
        return [] if stops is None else [stops] if isinstance(stops, str) else list(stops)

    def _check(self) -> None:
        if self.do_sample and (self.temperature is None or not self.temperature > 0):
            raise InputError(f"temperature must be > 0 when do_sample=True, got {self.temperature!r} "
                             "(for greedy decoding use do_sample=False)")
        if self.num_return_sequences > 1:
            if self.num_beams == 1 and not self.do_sample:
                raise InputError(f"num_return_sequences={self.num_return_sequences} needs do_sample=True or "
                                 "num_beams > 1: greedy decoding returns one sequence per prompt")
            if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
                raise InputError(f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams})")
        if self.num_beams > 1 and self.early_stopping is not False and not self.eos_ids and not self.stop_list:
            raise InputError(f"early_stopping={self.early_stopping!r} with num_beams={self.num_beams} needs an end of "
                             "sequence: set eos_token_id (or stop_strings); none is set in the arguments or the model's "
                             "generation config")
        if any(not s for s in self.stop_list):
            raise InputError("stop_strings must be non-empty strings")
        # eos / pad / bos ids outside the vocabulary (GPT-2's default 50256 in a tiny checkpoint, -1) are
        # fine, as in transformers: such an eos never ends a row, such a pad only fills the output


__all__ = ["DEFAULTS", "UNSUPPORTED", "GenerationConfig"]
