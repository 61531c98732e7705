"""Helpers shared by the op modules: type checks, broadcasting inference, half-precision references."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import GraphError
from .. import dims as D
from ..dtypes import DType
from ..registry import TensorType


def require(cond: bool, message: str) -> None:
    if not cond:
        raise GraphError(message)


def same_dtype(op: str, *types: TensorType | None) -> DType:
    dts = {t.dtype for t in types if t is not None}
    require(len(dts) == 1, f"{op}: inputs must share one dtype, got {', '.join(sorted(str(d) for d in dts))}")
    return dts.pop()


def float_dtype(op: str, t: TensorType) -> None:
    require(t.dtype.is_float, f"{op}: needs a float input, got {t.dtype}")


def broadcast(op: str, *types: TensorType) -> D.Shape:
    shape = D.broadcast_shapes(*(t.shape for t in types))
    require(shape is not None, f"{op}: shapes {' and '.join(D.fmt(t.shape) for t in types)} do not broadcast")
    return shape


def axis(op: str, a: int, rank: int) -> int:
    require(-rank <= a < max(rank, 1), f"{op}: axis {a} is out of range for rank {rank}")
    return a % rank if rank else 0


def as_np(x: Any) -> np.ndarray:
    return np.asarray(x)


def in_f32(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Wrap a float reference so f16/bf16 inputs compute in f32 and round once at the end."""

    def ref(*args: Any, **attrs: Any) -> np.ndarray:
        arrays = [None if a is None else as_np(a) for a in args]
        dt = next((a.dtype for a in arrays if a is not None and a.dtype in (DType.f16.numpy, DType.bf16.numpy)), None)
        if dt is None:
            return fn(*arrays, **attrs)
        up = [a.astype(np.float32) if a is not None and a.dtype == dt else a for a in arrays]
        out = fn(*up, **attrs)
        return tuple(o.astype(dt) if o.dtype == np.float32 else o for o in out) if isinstance(out, tuple) else out.astype(dt)

    ref.__name__ = fn.__name__
    ref.__doc__ = fn.__doc__
    return ref
