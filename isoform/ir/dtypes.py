"""IR dtypes: the six element types a transformer zoo needs, and their NumPy equivalents."""

from __future__ import annotations

from enum import StrEnum

import ml_dtypes
import numpy as np

from ..errors import GraphError


class DType(StrEnum):
    """Element type of an IR value. The string value is the short name used in printing and JSON."""

    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    i32 = "i32"
    i64 = "i64"
    bool = "bool"

    @property
    def is_float(self) -> bool:
        return self in (DType.f32, DType.f16, DType.bf16)

    @property
    def is_int(self) -> bool:
        return self in (DType.i32, DType.i64)

    @property
    def numpy(self) -> np.dtype:
        return _TO_NUMPY[self]

    @property
    def lowest(self) -> float:
        """The most negative finite value (what masked attention scores become)."""
        return float(ml_dtypes.finfo(self.numpy).min)

    def __str__(self) -> str:
        return self.value


_TO_NUMPY = {
    DType.f32: np.dtype(np.float32),
    DType.f16: np.dtype(np.float16),
    DType.bf16: np.dtype(ml_dtypes.bfloat16),
    DType.i32: np.dtype(np.int32),
    DType.i64: np.dtype(np.int64),
    DType.bool: np.dtype(np.bool_),
}
_FROM_NUMPY = {v: k for k, v in _TO_NUMPY.items()}
_ALIASES = {
    "float32": DType.f32, "float16": DType.f16, "bfloat16": DType.bf16, "int32": DType.i32,
    "int64": DType.i64, "half": DType.f16, "float": DType.f32,
}


def as_dtype(x: DType | str | np.dtype | type) -> DType:
    """Convert a DType, a name (`f32`, `float32`, ...) or a NumPy dtype to a DType."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str):
        if x in DType.__members__:
            return DType[x]
        if x in _ALIASES:
            return _ALIASES[x]
    else:
        try:
            return _FROM_NUMPY[np.dtype(x)]
        except (TypeError, KeyError):
            pass
    raise GraphError(f"unknown dtype {x!r}; expected one of {[d.value for d in DType]} or float32/float16/bfloat16/int32/int64")
