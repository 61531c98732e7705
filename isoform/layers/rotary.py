"""Rotary position embeddings (RoPE), with every ``rope_type`` of transformers' ``modeling_rope_utils``:
``default``, ``linear``, ``dynamic`` (NTK), ``yarn``, ``longrope``, ``llama3`` and ``proportional``.

`Rope` holds the parameters (a transformers ``rope_parameters`` dict) and computes the inverse
frequencies in float32 with the same formulas as transformers, so they agree to the last bit or
two. Types whose frequencies depend on the sequence length are resolved in the graph, as
transformers does at inference: ``dynamic`` rescales the base once the longest position id + 1
exceeds ``max_position_embeddings`` (from that call's position ids, i.e. per prefill/step when
decoding); ``longrope`` switches from the short to the long factors past
``original_max_position_embeddings``. `rotary_embedding` gives ``cos``/``sin`` for position ids and
`apply_rotary` rotates query/key heads with the ``rotate_half`` convention of Llama.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..ir import Tensor, fn

REQUIRED = {"default": (), "linear": ("factor",), "dynamic": ("factor",), "yarn": ("factor",),
            "longrope": ("long_factor", "short_factor"), "llama3": ("factor", "low_freq_factor", "high_freq_factor"),
            "proportional": ()}
F32 = np.float32


@dataclass(frozen=True)
class Rope:
    """RoPE parameters: ``params`` is a transformers ``rope_parameters`` dict (``rope_type``,
    ``rope_theta``, ``factor``, ...); ``head_dim`` and ``max_position_embeddings`` come from the config."""

    params: Mapping[str, Any]
    head_dim: int
    max_position_embeddings: int

    def __post_init__(self) -> None:
        kind = self.type
        if kind not in REQUIRED:
            raise ConfigError(f"rope_parameters.rope_type {kind!r} is not supported; supported: {', '.join(REQUIRED)}")
        missing = [k for k in REQUIRED[kind] if self.params.get(k) is None]
        if missing:
            raise ConfigError(f"rope_parameters of rope_type {kind!r} needs {missing}")
        if 2 * len(self.inv_freq()[0]) != self.head_dim:
            raise ConfigError(f"rope_parameters rotate {2 * len(self.inv_freq()[0])} of head_dim {self.head_dim} dims "
                              f"(partial_rotary_factor {self.params.get('partial_rotary_factor')}): the model rotates "
                              "whole heads (transformers fails on this config too)")

    @property
    def type(self) -> str:
        return str(self.params.get("rope_type", self.params.get("type", "default")))

    @property
    def theta(self) -> float:
        return float(self.params.get("rope_theta", 10000.0))

    @property
    def original_max_position_embeddings(self) -> int:
        return int(self.params.get("original_max_position_embeddings") or self.max_position_embeddings)

    @property
    def rotary_dim(self) -> int:
        """Dims the scaled types rotate: ``head_dim * partial_rotary_factor``."""
        return int(self.head_dim * float(self.params.get("partial_rotary_factor", 1.0)))

    def _exponents(self, dim: int) -> np.ndarray:
        return np.arange(0, dim, 2, dtype=np.int64).astype(F32) / F32(dim)

    def inv_freq(self, long: bool = False) -> tuple[np.ndarray, float]:
        """(inverse frequencies [rotary_dim / 2] float32, attention factor) as transformers computes them
        at init; ``long``: longrope's long factors."""
        p, kind, base = self.params, self.type, self.theta
        if kind == "default":  # Llama's default ignores partial_rotary_factor
            return (F32(1.0) / (F32(base) ** self._exponents(self.head_dim))).astype(F32), 1.0
        dim = self.rotary_dim
        inv = (F32(1.0) / (F32(base) ** self._exponents(dim))).astype(F32)
        if kind in ("linear", "dynamic"):  # dynamic below max_position_embeddings equals the default
            return (inv / F32(p["factor"]) if kind == "linear" else inv), 1.0
        if kind == "llama3":
            return _llama3(inv, p, self.original_max_position_embeddings), 1.0
        if kind == "yarn":
            return self._yarn(dim)
        if kind == "longrope":
            return self._longrope(dim, long)
        return self._proportional()

    def _yarn(self, dim: int) -> tuple[np.ndarray, float]:
        p, base, omp = self.params, self.theta, self.original_max_position_embeddings
        factor = p.get("factor") or self.max_position_embeddings / omp

        def mscale(scale: float, m: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        attention = p.get("attention_factor")
        if attention is None:
            ms, ms_all = p.get("mscale"), p.get("mscale_all_dim")
            attention = float(mscale(factor, ms) / mscale(factor, ms_all)) if ms and ms_all else mscale(factor)

        def correction(rotations: float) -> float:
            return (dim * math.log(omp / (rotations * 2 * math.pi))) / (2 * math.log(base))

        low, high = correction(p.get("beta_fast") or 32), correction(p.get("beta_slow") or 1)
        if p.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=F32) - F32(low)) / F32(high - low), 0, 1).astype(F32)
        pos_freqs = F32(base) ** (np.arange(0, dim, 2).astype(F32) / F32(dim))
        extrapolation = F32(1) - ramp
        inv = (F32(1.0) / (F32(factor) * pos_freqs)) * (F32(1) - extrapolation) + (F32(1.0) / pos_freqs) * extrapolation
        return inv.astype(F32), float(attention)

    def _longrope(self, dim: int, long: bool) -> tuple[np.ndarray, float]:
        p, omp = self.params, self.original_max_position_embeddings
        factor = p.get("factor") or self.max_position_embeddings / omp
        attention = p.get("attention_factor")
        if attention is None:
            attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(omp))
        ext = np.asarray(p["long_factor" if long else "short_factor"], F32)
        if ext.shape != (dim // 2,):
            raise ConfigError(f"rope_parameters long_factor/short_factor must have {dim // 2} entries, got {ext.shape}")
        return (F32(1.0) / (ext * F32(self.theta) ** self._exponents(dim))).astype(F32), float(attention)

    def _proportional(self) -> tuple[np.ndarray, float]:
        p, head = self.params, self.head_dim
        angles = int(float(p.get("partial_rotary_factor", 1.0)) * head // 2)
        rotated = F32(1.0) / (F32(self.theta) ** (np.arange(0, 2 * angles, 2, dtype=np.int64).astype(F32) / F32(head)))
        inv = np.concatenate([rotated, np.zeros(head // 2 - angles, F32)]).astype(F32)
        return (inv / F32(p.get("factor", 1.0))).astype(F32), 1.0

    @property
    def max_length(self) -> int:
        """Longest context: ``max_position_embeddings``, times ``factor`` for dynamic NTK (which
        extends the context at inference)."""
        if self.type == "dynamic":
            return int(self.max_position_embeddings * float(self.params["factor"]))
        return self.max_position_embeddings


def _llama3(inv: np.ndarray, p: Mapping[str, Any], old: int) -> np.ndarray:
    factor, low, high = F32(p["factor"]), float(p["low_freq_factor"]), float(p["high_freq_factor"])
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = F32(2 * math.pi) / inv
    scaled = np.where(wavelen > low_wavelen, inv / factor, inv).astype(F32)
    smooth = ((F32(old) / wavelen - F32(low)) / F32(high - low)).astype(F32)
    smoothed = (F32(1) - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(F32)


def _inv_freq_in_graph(positions: Tensor, rope: Rope) -> tuple[Tensor, float]:
    """Inverse frequencies [rotary_dim / 2] (f32) for this call's ``positions``."""
    g = positions.builder
    inv, attention = rope.inv_freq()
    static = g.constant(inv.tolist(), "f32")
    if rope.type not in ("dynamic", "longrope"):
        return static, attention
    seq_len = (positions.max([0, 1]) + 1).cast("f32")  # transformers: max(position_ids) + 1, over the batch
    if rope.type == "longrope":
        longer = fn.gt(seq_len, g.constant(float(rope.original_max_position_embeddings), "f32"))
        return fn.where(longer, g.constant(rope.inv_freq(long=True)[0].tolist(), "f32"), static), attention
    mpe, factor, dim = float(rope.max_position_embeddings), float(rope.params["factor"]), rope.rotary_dim
    base = float(rope.theta) * ((seq_len * factor / mpe) - (factor - 1.0)) ** (dim / (dim - 2))
    dynamic = 1.0 / fn.pow(base.reshape(1), g.constant(rope._exponents(dim).tolist(), "f32"))
    return fn.where(fn.gt(seq_len, g.constant(mpe, "f32")), dynamic, static), attention


def rotary_embedding(positions: Tensor, rope: Rope, dtype: Any) -> tuple[Tensor, Tensor]:
    """``cos``, ``sin`` [batch, 1, seq, head_dim] in ``dtype`` for integer ``positions`` [batch|1, seq],
    computed in float32 as transformers does (``emb = cat(freqs, freqs)``, times the attention factor)."""
    inv, attention = _inv_freq_in_graph(positions, rope)
    b, s = positions.shape
    freqs = positions.cast("f32").reshape(b, s, 1) * inv
    emb = fn.concat(freqs, freqs, axis=-1)
    cos, sin = fn.cos(emb), fn.sin(emb)
    if attention != 1.0:
        cos, sin = cos * attention, sin * attention
    return tuple(t.cast(dtype).reshape(b, 1, s, emb.shape[-1]) for t in (cos, sin))  # type: ignore[return-value]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x * cos + rotate_half(x) * sin`` for heads ``x`` [batch, heads, seq, head_dim]."""
    half = x.shape[-1] // 2
    rotated = fn.concat(-x[..., half:], x[..., :half], axis=-1)
    return x * cos + rotated * sin
