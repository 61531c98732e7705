"""Tensor transforms used in weight maps, declared as data and invertible.

A transform maps a checkpoint-layout array to a graph-layout array (``apply``), predicts the result
shape from a header shape alone (``out_shape``, so strict checks read no data) and has an
``inverse`` used when saving back to the Hugging Face layout.

`WeightNorm` is the one transform of two tensors (a weight-normalized layer's magnitude and
direction -> its weight): rules call its ``join`` / ``split`` (`isoform.layers.audio.WeightNormRule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import WeightsError
from .dtypes import cast, dtype_name, is_floating

Shape = tuple[int, ...]


class Transform:
    """Base class of weight transforms."""

    def apply(self, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def out_shape(self, shape: Shape) -> Shape:
        raise NotImplementedError

    def inverse(self) -> Transform:
        raise NotImplementedError

    def out_dtype(self, dtype: str) -> str:
        return dtype


@dataclass(frozen=True)
class Transpose(Transform):
    """Permute axes; ``perm=None`` reverses them (``.T`` of a matrix). Returns a view (no copy)."""

    perm: tuple[int, ...] | None = None

    def apply(self, array: np.ndarray) -> np.ndarray:
        return np.transpose(array, self.perm)

    def out_shape(self, shape: Shape) -> Shape:
        if self.perm is None:
            return tuple(reversed(shape))
        if sorted(self.perm) != list(range(len(shape))):
            raise WeightsError(f"Transpose{self.perm} does not fit a tensor of shape {list(shape)}")
        return tuple(shape[p] for p in self.perm)

    def inverse(self) -> Transform:
        if self.perm is None:
            return self
        return Transpose(tuple(int(i) for i in np.argsort(self.perm)))


@dataclass(frozen=True)
class Reshape(Transform):
    """Reshape to ``shape`` (one entry may be -1). ``back`` is the checkpoint shape, needed to save."""

    shape: tuple[int, ...]
    back: tuple[int, ...] | None = None

    def apply(self, array: np.ndarray) -> np.ndarray:
        return array.reshape(self.out_shape(array.shape))

    def out_shape(self, shape: Shape) -> Shape:
        size = int(np.prod(shape, dtype=np.int64))
        known = int(np.prod([d for d in self.shape if d != -1], dtype=np.int64))
        out = tuple(size // known if d == -1 and known else d for d in self.shape)
        if int(np.prod(out, dtype=np.int64)) != size:
            raise WeightsError(f"cannot reshape a tensor of shape {list(shape)} to {list(self.shape)}")
        return out

    def inverse(self) -> Transform:
        if self.back is None:
            raise WeightsError(f"Reshape{self.shape} cannot be inverted for saving: give it back=<checkpoint shape>")
        return Reshape(self.back, self.shape)


@dataclass(frozen=True)
class Cast(Transform):
    """Cast floating-point tensors to ``dtype`` (integers are left alone); ``back`` restores on save."""

    dtype: str
    back: str | None = None

    def apply(self, array: np.ndarray) -> np.ndarray:
        return cast(array, self.dtype)

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def out_dtype(self, dtype: str) -> str:
        return dtype_name(self.dtype) if is_floating(dtype) else dtype

    def inverse(self) -> Transform:
        return Cast(dtype_name(self.back), self.dtype) if self.back else Chain(())


@dataclass(frozen=True)
class Chain(Transform):
    """Several transforms applied left to right (``()`` is the identity)."""

    steps: tuple[Transform, ...]

    def apply(self, array: np.ndarray) -> np.ndarray:
        for t in self.steps:
            array = t.apply(array)
        return array

    def out_shape(self, shape: Shape) -> Shape:
        for t in self.steps:
            shape = t.out_shape(shape)
        return shape

    def out_dtype(self, dtype: str) -> str:
        for t in self.steps:
            dtype = t.out_dtype(dtype)
        return dtype

    def inverse(self) -> Transform:
        return Chain(tuple(t.inverse() for t in reversed(self.steps)))


@dataclass(frozen=True)
class WeightNorm:
    """Weight normalization (``torch.nn.utils.weight_norm`` and ``parametrizations.weight_norm``)
    over axis ``dim``: a checkpoint stores the magnitude ``g`` (size 1 on every axis but ``dim``) and
    the direction ``v`` (``weight_g`` / ``weight_v``, or ``parametrizations.weight.original0`` /
    ``original1``); the graph holds the weight ``w = g * v / ||v||`` (the norm over every axis but
    ``dim``), computed once at load (in float64, then the dtype of ``v``). Saving splits ``w`` into ``g = ||w||`` and ``v = w``,
    which gives ``w`` back. A transform of two tensors, applied by `isoform.layers.audio.WeightNormRule`."""

    dim: int

    def _g_shape(self, shape: Shape) -> Shape:
        if not -len(shape) <= self.dim < len(shape):
            raise WeightsError(f"WeightNorm(dim={self.dim}) does not fit a tensor of shape {list(shape)}")
        d = self.dim % len(shape)
        return tuple(n if i == d else 1 for i, n in enumerate(shape))

    def _norm(self, a: np.ndarray) -> np.ndarray:
        d = self.dim % a.ndim
        a = a.astype(np.float64)
        return np.sqrt(np.sum(a * a, axis=tuple(i for i in range(a.ndim) if i != d), keepdims=True))

    def join_shape(self, g: Shape, v: Shape) -> Shape:
        """The weight's shape from the header shapes of ``g`` and ``v``."""
        if tuple(g) != self._g_shape(v):
            raise WeightsError(f"weight norm over dim {self.dim}: magnitude of shape {list(g)} does not fit a direction "
                               f"of shape {list(v)} (expected {list(self._g_shape(v))})")
        return tuple(v)

    def split_shapes(self, shape: Shape) -> tuple[Shape, Shape]:
        return self._g_shape(shape), tuple(shape)

    def join(self, g: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``g * v / ||v||`` in the dtype of ``v``."""
        return cast(g.astype(np.float64) * v.astype(np.float64) / self._norm(v), v.dtype)

    def split(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(||w||, w)``: a magnitude and direction that `join` maps back to ``w``."""
        return cast(self._norm(w), w.dtype), w


def as_transform(t: Transform | Sequence[Transform] | None) -> Transform:
    """Normalize ``None``, one transform or a sequence of transforms to a single Transform."""
    if t is None:
        return Chain(())
    if isinstance(t, Transform):
        return t
    return Chain(tuple(t))
