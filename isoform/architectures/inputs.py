"""Input specs: what an architecture's forward graph takes, declared once, checked once by `Model`.

    Inputs([
        InputSpec("input_ids", ("batch", "seq"), high=vocab, bound="the vocabulary size (vocab_size)", pad=pad_id),
        InputSpec("attention_mask", ("batch", "seq"), high=2, bound="2 (values must be 0 or 1)",
                  default=ones_like("input_ids")),
        InputSpec("bbox", ("batch", "seq", 4), high=1001, bound="1001 (boxes are scaled to 0..1000)"),
        InputSpec("pixel_values", ("batch", 3, 224, 224), FLOAT),  # no default: required
    ], limits={"seq": Limit("sequence length", 512, "max_position_embeddings")})

A spec's dtype is ``"i64"`` (any integer array is accepted and widened) or `FLOAT`: the model's
float dtype (any float array, cast to it). Symbolic dims (``"batch"``, ``"seq"``) must agree between
all inputs that name them. `Inputs.check` raises InputError naming the input for unknown or missing
inputs, the wrong rank or kind of dtype, a fixed dim that differs, a symbolic dim two inputs disagree
on, an empty dim, a dim over its limit, integers outside ``[low, high)`` and floats that are not
finite. `Inputs.complete` fills the defaults of optional inputs left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputError
from ..ir import GraphBuilder, Tensor
from ..ir.dims import Dim

FLOAT = "float"  # spec dtype of float inputs: the model's float dtype
Default = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class InputSpec:
    """One graph input: name, symbolic shape, dtype and what the facade checks (see the module doc).
    ``pad`` is the value `Model` appends when it pads the ``seq`` dim up to a compile bucket."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "i64"
    low: int = 0
    high: int | None = None  # exclusive bound of integer values (None: unbounded)
    bound: str = ""  # what ``high`` is, for the error
    default: Default | None = None  # fills the input when it is left out; None: the input is required
    pad: int | float = 0

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def layout(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"

    def declare(self, g: GraphBuilder) -> Tensor:
        """This input on graph builder ``g``."""
        return g.input(self.name, self.shape, g.dtype if self.dtype == FLOAT else self.dtype)


class Limit(NamedTuple):
    """Largest size of a symbolic dim, e.g. ``Limit("sequence length", 512, "max_position_embeddings")``."""

    what: str
    size: int
    key: str  # the config key it comes from


@dataclass(frozen=True)
class Filled:
    """A default: ``value`` (i64) in the shape of input ``like``, or of its first ``rank`` dims."""

    like: str
    value: int
    rank: int | None = None

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.full(arrays[self.like].shape[:self.rank], self.value, np.int64)


def ones_like(name: str) -> Default:
    """Default of a mask: all ones in the shape of input ``name``."""
    return Filled(name, 1)


def zeros_like(name: str) -> Default:
    """Default of token types and similar: zeros in the shape of input ``name``."""
    return Filled(name, 0)


def token_ids(name: str, shape: tuple[Dim, ...], vocab_size: int, pad: int, default: Default | None = None) -> InputSpec:
    """Token ids in ``[0, vocab_size)``, padded with ``pad`` (required unless given a ``default``)."""
    return InputSpec(name, shape, high=vocab_size, bound="the vocabulary size (vocab_size)", default=default, pad=pad)


def attention_mask(shape: tuple[Dim, ...], like: str, name: str = "attention_mask") -> InputSpec:
    """A 0/1 mask in the shape of the ids ``like`` (default: all ones)."""
    return InputSpec(name, shape, high=2, bound="2 (values must be 0 or 1)", default=ones_like(like))


@dataclass(frozen=True)
class Inputs:
    """The input specs of one forward graph, in graph order, with the limits of its symbolic dims."""

    specs: Sequence[InputSpec]
    limits: Mapping[str, Limit] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def __getitem__(self, name: str) -> InputSpec:
        return next(s for s in self.specs if s.name == name)

    def replacing(self, name: str, spec: InputSpec) -> Inputs:
        """These inputs with input ``name`` replaced by ``spec`` (``input_ids`` by ``inputs_embeds``):
        defaults shaped like ``name`` take the shape of ``spec``'s leading dims; defaults computed some
        other way (they may read ``name``) make their inputs required."""
        old = self[name]

        def retarget(s: InputSpec) -> InputSpec:
            if s.name == name:
                return spec
            if s.default is None or (isinstance(s.default, Filled) and s.default.like != name):
                return s
            if isinstance(s.default, Filled):
                return replace(s, default=Filled(spec.name, s.default.value, len(old.shape)))
            return replace(s, default=None)

        return Inputs([retarget(s) for s in self.specs], self.limits)

    def adding(self, spec: InputSpec) -> Inputs:
        """These inputs and ``spec``, last."""
        return Inputs([*self.specs, spec], self.limits)

    def check(self, arrays: Mapping[str, np.ndarray], *, partial: bool = False) -> dict[str, int]:
        """Check the given ``arrays`` (a subset of the inputs is fine unless a required one is left out, or
        ``partial``: generation's prompt, whose decoder inputs come later); return the sizes of the
        symbolic dims. InputError naming the input at fault."""
        unknown = sorted(set(arrays) - set(self.names))
        if unknown:
            raise InputError(f"unexpected input(s) {unknown}; this model takes {self.names}")
        missing = [s.name for s in self.specs if s.required and s.name not in arrays and not partial]
        if missing:
            raise InputError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required; this model takes {self.names}")
        dims: dict[str, tuple[int, str]] = {}  # symbolic dim -> (size, input it was read from)
        for spec in self.specs:
            if spec.name in arrays:
                self._check_one(spec, arrays[spec.name], arrays, dims)
        return {d: n for d, (n, _) in dims.items()}

    def _check_one(self, spec: InputSpec, x: np.ndarray, arrays: Mapping[str, np.ndarray],
                   dims: dict[str, tuple[int, str]]) -> None:
        name, floats = spec.name, spec.dtype == FLOAT
        if x.dtype.kind not in ("fV" if floats else "iub"):
            raise InputError(f"{name} must hold {'floats' if floats else 'integers'}, got dtype {x.dtype}")
        if x.ndim != len(spec.shape):
            raise InputError(f"{name} must have shape {spec.layout}, got shape {x.shape}")
        for axis, (d, n) in enumerate(zip(spec.shape, x.shape)):
            if n == 0:
                raise InputError(f"{name} is empty: dim {d!r} of {spec.layout} is 0, shape {x.shape}")
            if isinstance(d, int):
                if n != d:
                    raise InputError(f"{name} must have shape {spec.layout}, got shape {x.shape}: dim {axis} must be {d}")
                continue
            if d in dims and dims[d][0] != n:
                other = dims[d][1]
                raise InputError(f"{name} has shape {x.shape}, but {other} has shape {arrays[other].shape}: "
                                 f"they must agree in dim {d!r}")
            dims.setdefault(d, (n, name))
            limit = self.limits.get(d)
            if limit is not None and n > limit.size:
                raise InputError(f"{name} has {limit.what} {n}, longer than this model's maximum {limit.size} "
                                 f"({limit.key}): truncate the inputs")
        if floats:
            if not np.isfinite(x).all():
                bad = np.argwhere(~np.isfinite(x))[0]
                raise InputError(f"{name} holds {x[tuple(bad)]} at index {tuple(int(i) for i in bad)}: "
                                 "float inputs must be finite")
        elif spec.high is not None:
            check_range(name, x, spec.low, spec.high, spec.bound)

    def complete(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``arrays`` (checked by `check`) with the defaults of the inputs left out filled in, in graph order."""
        for spec in self.specs:
            if spec.name not in arrays:
                arrays[spec.name] = spec.default(arrays)  # required ones were checked present
        return {n: arrays[n] for n in self.names}


def check_range(name: str, x: np.ndarray, low: int, high: int, what: str) -> None:
    """InputError unless every value of integer array ``x`` is in ``[low, high)``; ``what`` names ``high``."""
    if x.size and (x.min() < low or x.max() >= high):
        bad = np.argwhere((x < low) | (x >= high))[0]
        raise InputError(f"{name} holds {x[tuple(bad)]} at index {tuple(int(i) for i in bad)}, outside "
                         f"[{low}, {high}) where {high} is {what}")


#: Sizes of the symbolic dims in `sample_inputs`.
SAMPLE_SIZES = {"batch": 2, "seq": 16, "target": 8, "samples": 4000}


def sample_inputs(arch: Any, task: str | None, seed: int = 0) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Random inputs an architecture's ``task`` graph accepts, from its input specs: ids in each spec's
    range, all-ones masks, standard-normal floats; one row for a classifier that pools the last token
    (no pad token), and each row ending in the eos token where an encoder-decoder classifier pools
    there. Returns (the sizes of the dims used, the inputs)."""
    specs = arch.input_specs(task).specs
    classify = task == "sequence-classification"
    sizes = dict(SAMPLE_SIZES, batch=1 if classify and getattr(arch, "pad_token", 0) is None else 2)
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in specs:
        shape = [d if isinstance(d, int) else sizes.setdefault(d, 2) for d in spec.shape]
        if spec.dtype == FLOAT:
            inputs[spec.name] = rng.standard_normal(shape).astype(np.float32)
        elif spec.name.endswith("attention_mask"):
            inputs[spec.name] = np.ones(shape, np.int64)
        else:
            inputs[spec.name] = rng.integers(spec.low, spec.high or spec.low + 1, shape)
    if classify and arch.generative_task == "seq2seq-lm":
        eos, ids = arch.eos_token_id, inputs["input_ids"]
        ids[ids == eos] = (eos + 1) % arch.config.vocab_size
        ids[..., -1] = eos
    return {k: v for k, v in sizes.items() if any(k in s.shape for s in specs)}, inputs
