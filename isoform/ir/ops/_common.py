"""Helpers shared by the op modules: type checks and broadcasting inference."""

from __future__ import annotations

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
