"""Element types of checkpoint tensors: safetensors codes <-> NumPy / ml_dtypes, and casting.

Names used across the weight layer are NumPy names (``float32``, ``bfloat16``, ``int64``, ``bool``).
The IR's short names (``f32``, ``bf16``, ...) and NumPy dtypes are accepted wherever a name is.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import ml_dtypes
import numpy as np

from ..errors import WeightsError

# safetensors dtype code -> NumPy dtype (little-endian, as the format stores them).
SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype(np.bool_),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
_TO_SAFETENSORS = {v: k for k, v in SAFETENSORS_DTYPES.items()}

# Target dtypes a model may be loaded in.
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
#: Other spellings of each (lower case; matched case-insensitively), as transformers users write them.
FLOAT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "float32": ("fp32", "float", "f32"),
    "float16": ("fp16", "half", "f16"),
    "bfloat16": ("bf16",),
}
_SPELLING = {s: name for name, others in FLOAT_SPELLINGS.items() for s in (name, *others)}

_ALIASES = {
    "f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16",
    "i64": "int64", "i32": "int32", "i16": "int16", "i8": "int8", "u8": "uint8",
    "float": "float32", "half": "float16", "bool_": "bool",
}


def to_numpy_dtype(name: str | np.dtype | type) -> np.dtype:
    """The NumPy dtype for a name (``"bfloat16"``, ``"bf16"``, ``"F32"``, ``np.float16``...)."""
    if isinstance(name, Enum):  # e.g. isoform.ir.DType
        name = name.value
    if isinstance(name, str):
        if name in SAFETENSORS_DTYPES:
            return SAFETENSORS_DTYPES[name]
        key = _ALIASES.get(name, name)
        if key == "bfloat16":
            return np.dtype(ml_dtypes.bfloat16)
        name = key
    try:
        return np.dtype(name)
    except TypeError:
        raise WeightsError(f"unknown dtype {name!r}") from None


def dtype_name(dtype: str | np.dtype | type) -> str:
    """Canonical NumPy name of a dtype: ``float32``, ``bfloat16``, ``int64``, ``bool``..."""
    return to_numpy_dtype(dtype).name


def safetensors_code(dtype: np.dtype) -> str:
    """The safetensors dtype code (``F32``, ``BF16``...) for a NumPy dtype."""
    try:
        return _TO_SAFETENSORS[np.dtype(dtype)]
    except KeyError:
        raise WeightsError(f"dtype {np.dtype(dtype).name} cannot be stored in safetensors") from None


def is_floating(dtype: str | np.dtype) -> bool:
    """True for floating-point dtypes, including bfloat16 and float8."""
    dt = to_numpy_dtype(dtype)
    return np.issubdtype(dt, np.floating) or dt.name == "bfloat16" or dt.name.startswith("float8")


def check_float_dtype(dtype: Any, auto: bool = False) -> str | None:
    """The canonical name (``float32``, ``float16`` or ``bfloat16``) of a model ``dtype`` argument: a
    spelling of `FLOAT_SPELLINGS` (any case, ``torch.`` prefix allowed), a NumPy / ml_dtypes dtype or
    type (``np.float16``), a torch dtype (``torch.bfloat16``: read by name, torch is not imported), a
    TensorFlow dtype or an `isoform.ir.DType`. None stays None; with ``auto``, ``"auto"`` stays
    ``"auto"`` (the caller reads the checkpoint's dtype, `isoform.weights.auto_dtype`). Anything else:
    WeightsError listing the accepted spellings. Every public ``dtype`` argument is parsed here."""
    if dtype is None:
        return None
    if auto and isinstance(dtype, str) and dtype.strip().lower() == "auto":
        return "auto"
    name = _float_name(dtype)
    if name not in FLOAT_DTYPES:
        others = ", ".join(repr(s) for v in FLOAT_SPELLINGS.values() for s in v)
        more = ", 'auto' (the checkpoint's dtype)" if auto else ""
        raise WeightsError(f"dtype {dtype!r} is not supported; expected one of {list(FLOAT_DTYPES)} (or {others}{more}, "
                           "or a NumPy, torch or TensorFlow dtype of those)")
    return name


def _float_name(dtype: Any) -> str | None:
    """NumPy name of a dtype argument in any accepted form, or None if it is no dtype at all."""
    if isinstance(dtype, Enum):  # isoform.ir.DType
        dtype = dtype.value
    elif type(dtype).__module__ == "torch" and type(dtype).__name__ == "dtype":
        dtype = str(dtype)  # "torch.float16"
    elif hasattr(dtype, "as_numpy_dtype"):  # tf.DType
        dtype = dtype.as_numpy_dtype
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key in _SPELLING:
            return _SPELLING[key]
    try:
        return dtype_name(dtype)
    except (WeightsError, TypeError, ValueError):
        return None


def cast(array: np.ndarray, dtype: str | np.dtype | None) -> np.ndarray:
    """Cast floating-point ``array`` to ``dtype``; integer and bool arrays (and ``dtype=None``) are
    returned unchanged. No copy is made when the dtype already matches."""
    if dtype is None or not is_floating(array.dtype):
        return array
    target = to_numpy_dtype(dtype)
    if array.dtype == target:
        return array
    return array.astype(target)
