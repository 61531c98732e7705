"""Elementwise ops.

Why each exists: `add sub mul div pow maximum minimum neg abs` are the arithmetic every layer uses;
`exp log sqrt rsqrt tanh erf sin cos` are the transcendental functions of softmax, norms, GELU
(exact: erf, approximate: tanh) and rotary/sinusoidal positions; `floor` turns float bucket math
into integers (T5 relative positions); comparisons, `logical_*` and `where` build masks;
`cast` moves between dtypes; `constant` and `iota` create values (scalars, position ranges).

Dtype rule: binary ops need both inputs of one dtype (numbers in layer code are cast by the
builder); comparisons give bool. Shape rule: NumPy broadcasting. Half precision (`OpDef.half`):
arithmetic, transcendental functions and comparisons are "upcast" (f16/bf16 computed in f32, rounded
once); `logical_*`, `where`, `cast`, `constant` and `iota` are "native".
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf as _erf  # exact to double precision; NumPy has no erf

from .. import dims as D
from ..dtypes import DType
from ..registry import Attr, OpDef, TensorType, register
from ._common import as_np, broadcast, float_dtype, require, same_dtype


def _unary(name: str, ref, *, floats: bool = True, doc: str = "") -> None:
    def infer(x: TensorType) -> list[TensorType]:
        if floats:
            float_dtype(name, x)
        else:
            require(x.dtype != DType.bool, f"{name}: needs a numeric input, got bool")
        return [x]

    def reference(x):
        x = as_np(x)
        return np.asarray(ref(x)).astype(x.dtype)

    register(OpDef(name, ("x",), infer, reference, doc=doc, half="upcast"))


_unary("neg", np.negative, floats=False, doc="-x")
_unary("abs", np.abs, floats=False, doc="|x|")
_unary("exp", np.exp, doc="e**x")
_unary("log", np.log, doc="natural log; log(0) = -inf")
_unary("sqrt", np.sqrt, doc="square root")
_unary("rsqrt", lambda x: 1.0 / np.sqrt(x), doc="1/sqrt(x)")
_unary("tanh", np.tanh, doc="hyperbolic tangent")
_unary("erf", _erf, doc="Gauss error function")
_unary("sin", np.sin, doc="sine")
_unary("cos", np.cos, doc="cosine")
_unary("floor", np.floor, doc="round toward -inf (stays float)")


def _binary(name: str, ref, *, floats: bool = False, doc: str = "") -> None:
    def infer(a: TensorType, b: TensorType) -> list[TensorType]:
        dt = same_dtype(name, a, b)
        if floats:
            float_dtype(name, a)
        else:
            require(dt != DType.bool, f"{name}: needs numeric inputs, got bool")
        return [TensorType(broadcast(name, a, b), dt)]

    def reference(a, b):
        a, b = as_np(a), as_np(b)
        return np.asarray(ref(a, b)).astype(a.dtype)

    register(OpDef(name, ("a", "b"), infer, reference, doc=doc, half="upcast"))


_binary("add", np.add, doc="a + b")
_binary("sub", np.subtract, doc="a - b")
_binary("mul", np.multiply, doc="a * b")
_binary("div", np.divide, floats=True, doc="a / b (floats only)")
_binary("pow", np.power, floats=True, doc="a ** b (floats only)")
_binary("maximum", np.maximum, doc="elementwise max (NaN propagates)")
_binary("minimum", np.minimum, doc="elementwise min (NaN propagates)")


def _compare(name: str, ref, *, logical: bool = False) -> None:
    def infer(a: TensorType, b: TensorType) -> list[TensorType]:
        dt = same_dtype(name, a, b)
        require(not logical or dt == DType.bool, f"{name}: needs bool inputs, got {dt}")
        return [TensorType(broadcast(name, a, b), DType.bool)]

    register(OpDef(name, ("a", "b"), infer, lambda a, b: np.asarray(ref(as_np(a), as_np(b))),
                   doc=f"elementwise {ref.__name__}, giving bool", half="native" if logical else "upcast"))


for _name, _ref in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                    ("gt", np.greater), ("ge", np.greater_equal)]:
    _compare(_name, _ref)
_compare("logical_and", np.logical_and, logical=True)
_compare("logical_or", np.logical_or, logical=True)


def _infer_not(x: TensorType) -> list[TensorType]:
    require(x.dtype == DType.bool, f"logical_not: needs a bool input, got {x.dtype}")
    return [x]


register(OpDef("logical_not", ("x",), _infer_not, lambda x: np.logical_not(as_np(x)), half="native",
               doc="not x (bool)"))


def _infer_where(cond: TensorType, a: TensorType, b: TensorType) -> list[TensorType]:
    require(cond.dtype == DType.bool, f"where: condition must be bool, got {cond.dtype}")
    return [TensorType(broadcast("where", cond, a, b), same_dtype("where", a, b))]


register(OpDef("where", ("cond", "a", "b"), _infer_where,
               lambda c, a, b: np.where(as_np(c), as_np(a), as_np(b)).astype(as_np(a).dtype),
               doc="a where cond else b, broadcast", half="native"))


def _infer_cast(x: TensorType, *, dtype: DType) -> list[TensorType]:
    return [TensorType(x.shape, dtype)]


def _ref_cast(x, *, dtype: DType):
    x = as_np(x)
    if dtype.is_int and x.dtype.kind == "f":
        x = np.trunc(x.astype(np.float64))  # float -> int truncates toward zero
    return x.astype(dtype.numpy)


register(OpDef("cast", ("x",), _infer_cast, _ref_cast, {"dtype": Attr("dtype")}, half="native",
               doc="convert to `dtype`; float->int truncates toward zero, float rounding is to nearest"))


def _infer_constant(*, value, dtype: DType) -> list[TensorType]:
    arr = np.asarray(value)
    require(arr.dtype != object, f"constant: value must be a number or a rectangular nested list, got {value!r}")
    return [TensorType(tuple(arr.shape), dtype)]


register(OpDef("constant", (), _infer_constant, lambda *, value, dtype: np.asarray(value).astype(dtype.numpy),
               {"value": Attr("value"), "dtype": Attr("dtype")},
               doc="a constant: a scalar or small nested list of numbers, of `dtype`", half="native"))


def _infer_iota(*, shape, axis: int, dtype: DType) -> list[TensorType]:
    require(-len(shape) <= axis < len(shape), f"iota: axis {axis} is out of range for shape {D.fmt(tuple(shape))}")
    require(dtype != DType.bool, "iota: dtype must be numeric")
    return [TensorType(tuple(shape), dtype)]


def _ref_iota(*, shape, axis: int, dtype: DType):
    shape = tuple(int(s) for s in shape)
    axis %= len(shape)
    r = np.arange(shape[axis], dtype=dtype.numpy).reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return np.broadcast_to(r, shape).copy()


register(OpDef("iota", (), _infer_iota, _ref_iota,
               {"shape": Attr("dims"), "axis": Attr("int", 0), "dtype": Attr("dtype", DType.i64)},
               doc="0, 1, 2, ... along `axis`, broadcast to `shape` (dims may be symbolic)", half="native"))
