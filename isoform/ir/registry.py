"""The op registry: an `OpDef` per op, defined once, with attribute schema, shape/dtype inference,
a NumPy reference and (for composites) a decomposition into smaller ops."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import GraphError
from . import dims as D
from .dtypes import DType, as_dtype


@dataclass(frozen=True)
class TensorType:
    """Shape (ints or symbolic dims) and dtype of an IR value."""

    shape: D.Shape
    dtype: DType

    def __str__(self) -> str:
        return f"{self.dtype}{D.fmt(self.shape)}"

    @property
    def rank(self) -> int:
        return len(self.shape)


_REQUIRED = object()


def _float(v: Any) -> float:
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError("expected a number")
    return float(v)


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("expected an int")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError("expected true/false")
    return v


def _ints(v: Any) -> list[int]:
    if not isinstance(v, list | tuple):
        raise TypeError("expected a list of ints")
    return [_int(x) for x in v]


def _opt_ints(v: Any) -> list[int | None]:
    if not isinstance(v, list | tuple):
        raise TypeError("expected a list of ints or nulls")
    return [None if x is None else _int(x) for x in v]


def _dims(v: Any) -> list[D.Dim]:
    if not isinstance(v, list | tuple):
        raise TypeError("expected a list of dims (ints or symbolic names)")
    return [D.canonical(x) for x in v]


def _pads(v: Any) -> list[list[int]]:
    if not isinstance(v, list | tuple) or any(not isinstance(p, list | tuple) or len(p) != 2 for p in v):
        raise TypeError("expected a list of [low, high] pairs")
    return [[_int(p[0]), _int(p[1])] for p in v]


def _value(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return [_value(x) for x in v]
    if isinstance(v, bool):
        return v
    return v if isinstance(v, int) else _float(v)


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("expected a string")
    return v


def _opt(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


KINDS: dict[str, Callable[[Any], Any]] = {
    "int": _int, "float": _float, "bool": _bool, "ints": _ints, "opt_ints": _opt_ints, "dims": _dims,
    "pads": _pads, "value": _value, "dtype": lambda v: as_dtype(v), "opt_float": _opt(_float),
    "str": _str,
}


@dataclass(frozen=True)
class Attr:
    """Schema of one attribute: its kind (a key of KINDS), default, and allowed choices."""

    kind: str
    default: Any = _REQUIRED
    choices: tuple = ()


def in_f32(f: Callable[..., Any], *, half: Collection[Any], f32: Any,
           cast: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """`f` run in `f32` on f16/bf16 inputs (`half`: a framework's two dtypes for them): inputs of the
    first such dtype are cast to `f32` with `cast(x, dtype)`, and `f32` outputs cast back, so each
    result is rounded once. How the reference and every backend run ``half="upcast"`` ops."""

    def run(*args: Any, **attrs: Any) -> Any:
        dt = next((a.dtype for a in args if a is not None and a.dtype in half), None)
        if dt is None:
            return f(*args, **attrs)
        out = f(*[cast(a, f32) if a is not None and a.dtype == dt else a for a in args], **attrs)
        if isinstance(out, tuple):
            return tuple(cast(o, dt) if o.dtype == f32 else o for o in out)
        return cast(out, dt) if out.dtype == f32 else out

    return run


def _reference_in_f32(ref: Callable[..., Any]) -> Callable[..., Any]:
    run = in_f32(ref, half=(DType.f16.numpy, DType.bf16.numpy), f32=DType.f32.numpy,
                 cast=lambda a, dt: a.astype(dt))

    @functools.wraps(ref)
    def reference(*args: Any, **attrs: Any) -> Any:
        return run(*[None if a is None else np.asarray(a) for a in args], **attrs)

    return reference


@dataclass(frozen=True)
class OpDef:
    """One op: inputs (names; ``?name`` optional, ``*name`` variadic), attributes, number of outputs,
    shape/dtype inference, NumPy reference, optional decomposition (composite ops), and `half`, its
    half-precision policy, which the reference and every backend follow:

    - ``"upcast"``: f16/bf16 inputs are cast to f32 for the computation and the result is cast back
      (rounded once), so backends agree with the reference whatever their half kernels do. Every op
      that computes is "upcast", also those where f32 changes no value (neg, abs, comparisons, argmax,
      top_k), whose f32 kernels exist on every backend (ONNX Runtime's CPU has few bf16 ones).
    - ``"native"``: runs in the input dtype: ops that only move, select or create data (exact in any
      dtype), and the bool-only logical ops.

    `reference` is given as written for f32; for "upcast" ops the OpDef wraps it in `in_f32`."""

    name: str
    inputs: tuple[str, ...]
    infer: Callable[..., list[TensorType]]
    reference: Callable[..., Any]
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    num_outputs: int = 1
    decompose: Callable[..., Any] | None = None
    doc: str = ""
    half: Literal["upcast", "native"] = field(kw_only=True)

    def __post_init__(self) -> None:
        if self.half not in ("upcast", "native"):
            raise GraphError(f"op {self.name!r}: half must be 'upcast' or 'native', got {self.half!r}")
        if self.half == "upcast":
            object.__setattr__(self, "reference", _reference_in_f32(self.reference))

    @property
    def is_composite(self) -> bool:
        return self.decompose is not None

    def check_arity(self, n: int, where: str) -> None:
        variadic = any(i.startswith("*") for i in self.inputs)
        required = sum(1 for i in self.inputs if not i.startswith(("?", "*")))
        if n < required or (not variadic and n > len(self.inputs)):
            raise GraphError(f"{where}: {self.name} takes inputs ({', '.join(self.inputs)}), got {n}")

    def normalize_attrs(self, attrs: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Validate attributes against the schema, fill defaults; error names op, attribute and node."""
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise GraphError(f"{where}: {self.name} has no attribute {sorted(unknown)}; "
                             f"its attributes are {sorted(self.attrs)}")
        out = {}
        for key, spec in self.attrs.items():
            if key not in attrs:
                if spec.default is _REQUIRED:
                    raise GraphError(f"{where}: {self.name} needs attribute {key!r} ({spec.kind})")
                out[key] = spec.default
                continue
            try:
                value = KINDS[spec.kind](attrs[key])
            except (TypeError, ValueError, GraphError) as e:
                raise GraphError(f"{where}: {self.name} attribute {key}={attrs[key]!r}: {e}") from None
            if spec.choices and value not in spec.choices:
                raise GraphError(f"{where}: {self.name} attribute {key}={value!r} is not one of {list(spec.choices)}")
            out[key] = value
        return out


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in OPS:
        raise GraphError(f"op {op.name!r} is registered twice")
    OPS[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    from . import ops  # noqa: F401  (registers the built-in op set)

    try:
        return OPS[name]
    except KeyError:
        raise GraphError(f"unknown op {name!r}; known ops: {', '.join(sorted(OPS))}") from None


def all_ops() -> dict[str, OpDef]:
    from . import ops  # noqa: F401

    return dict(OPS)


def encode_attr(value: Any) -> Any:
    """Attribute value as plain JSON (non-finite floats as strings, dtypes by name)."""
    if isinstance(value, DType):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [encode_attr(v) for v in value]
    return value
