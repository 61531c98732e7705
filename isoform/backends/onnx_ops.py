"""Lowering of IR ops to ONNX nodes: `LOWERINGS` holds ``f(ctx, *inputs, **attrs)`` per op, emitting
through a `Ctx` (`onnx_ctx.py`); `emit` lowers one graph node. `onnx.py` builds and writes the model.

Every primitive op has a lowering to standard ONNX operators (opset >= 18). Composites are lowered
natively where ONNX has an operator for them at the chosen opset (`Softmax`, `LogSoftmax`,
`LayerNormalization`, `Sigmoid`; `Gelu` from opset 20; `Attention` and `RMSNormalization` from 23),
otherwise exported as their decomposition.

Numerics follow the NumPy references: nodes of "upcast" ops (`OpDef.half`) on f16/bf16 values run
in f32 between two `Cast`s (as the references compute, and because ONNX Runtime's CPU kernels lack
most bf16 types); "native" ops (data movement: reshape, transpose, slicing, concat, gather, where,
...) stay in the value's own dtype. Masked attention scores use the dtype's lowest finite value, so
fully masked rows average; causal masking is folded into that additive mask. `cast` float->int
relies on ONNX `Cast`, which truncates in ONNX Runtime (checked by the conformance suite).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import numpy_helper

from ..ir import get_op
from ..ir.dtypes import DType
from .base import half_dtype
from .onnx_ctx import ONNX_TYPE, Ctx, Scalar, V

MIN_OPSET = 18
#: Composites whose native ONNX operator needs a newer opset than MIN_OPSET (else: decomposition).
OPSET_NEEDED = {"gelu": 20, "attention": 23, "rms_norm": 23}
#: Every ONNX operator a lowering may emit (what a runtime must implement to run exported models).
ONNX_OPS = ("Abs", "Add", "And", "ArgMax", "Attention", "Cast", "Concat", "ConstantOfShape", "Conv", "Cos", "CumSum",
            "Div", "Equal", "Erf", "Exp", "Expand", "Floor", "Gather", "Gelu", "Greater", "GreaterOrEqual",
            "Identity", "LayerNormalization", "Less", "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "Min",
            "Mul", "Neg", "Not", "Or", "Pad", "Pow", "RMSNormalization", "Range", "Reciprocal", "ReduceMax",
            "ReduceMean", "ReduceMin", "ReduceSum", "Reshape", "ScatterND", "Shape", "Sigmoid", "Sin", "Slice",
            "Softmax", "Sqrt", "Squeeze", "Sub", "Tanh", "TopK", "Transpose", "Where")
_INT64_MAX = np.iinfo(np.int64).max

Lowering = Callable[..., Any]
LOWERINGS: dict[str, Lowering] = {}


def lower(*ops: str) -> Callable[[Lowering], Lowering]:
    """Register ``f(ctx, *inputs, **attrs) -> output name(s)`` as the ONNX lowering of `ops`."""

    def register(f: Lowering) -> Lowering:
        for op in ops:
            get_op(op)
            LOWERINGS[op] = f
        return f

    return register


def lowerable(op: str, opset: int) -> bool:
    """Whether `op` is exported natively (not decomposed) at `opset`."""
    return op in LOWERINGS and opset >= OPSET_NEEDED.get(op, MIN_OPSET)


def emit(ctx: Ctx, node: Any, values: dict[str, V]) -> None:
    """Lower one graph node into `ctx`, reading its inputs from `values` and adding its outputs. Nodes
    of "upcast" ops given f16/bf16 values run in f32 between Casts (`base.half_dtype`)."""
    args = [None if n is None else values[n] for n in node.inputs]
    half = half_dtype(node.op, [a.dtype for a in args if a is not None])
    if half is not None:
        args = [None if a is None else ctx.cast(a, DType.f32) if a.dtype == half else a for a in args]
    opdef = get_op(node.op)
    attrs = {k: [ctx.dim(d) for d in v] if opdef.attrs[k].kind == "dims" else v for k, v in node.attrs.items()}
    out = LOWERINGS[node.op](ctx, *args, **attrs)
    for o, name in zip(node.outputs, (out,) if isinstance(out, str) else out, strict=True):
        v = V(name, o.dtype, o.shape)
        values[o.name] = ctx.cast(V(name, DType.f32, o.shape), o.dtype) if o.dtype == half else v


# -- elementwise ------------------------------------------------------------------------------------
for _op, _onnx in {"neg": "Neg", "abs": "Abs", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh",
                   "erf": "Erf", "sin": "Sin", "cos": "Cos", "floor": "Floor", "logical_not": "Not",
                   "sigmoid": "Sigmoid", "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
                   "maximum": "Max", "minimum": "Min", "logical_and": "And", "logical_or": "Or",
                   "matmul": "MatMul", "eq": "Equal"}.items():
    lower(_op)(lambda ctx, *xs, _t=_onnx: ctx.op(_t, *xs))

lower("rsqrt")(lambda ctx, x: ctx.op("Reciprocal", ctx.op("Sqrt", x)))
lower("silu")(lambda ctx, x: ctx.op("Mul", x, ctx.op("Sigmoid", x)))
lower("ne")(lambda ctx, a, b: ctx.op("Not", ctx.op("Equal", a, b)))


def _compare(onnx_op: str) -> Lowering:
    def f(ctx: Ctx, a: V, b: V) -> str:
        if a.dtype == DType.bool:  # ONNX orders numbers only
            a, b = ctx.cast(a, DType.i32), ctx.cast(b, DType.i32)
        return ctx.op(onnx_op, a, b)

    return f


for _op, _onnx in {"lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual"}.items():
    lower(_op)(_compare(_onnx))


@lower("where")
def _where(ctx: Ctx, cond: V, a: V, b: V) -> str:
    via = {DType.bool: DType.i32, DType.bf16: DType.f32}.get(a.dtype)  # ONNX Runtime has no such Where kernels
    if via is None:
        return ctx.op("Where", cond, a, b)
    return ctx.op("Cast", ctx.op("Where", cond, ctx.cast(a, via), ctx.cast(b, via)), to=ONNX_TYPE[a.dtype])


@lower("cast")
def _cast(ctx: Ctx, x: V, *, dtype: DType) -> str:
    return ctx.op("Cast", x, to=ONNX_TYPE[dtype])  # float -> int truncates toward zero in ONNX Runtime


@lower("constant")
def _constant(ctx: Ctx, *, value: Any, dtype: DType) -> str:
    return ctx.const(np.asarray(value).astype(dtype.numpy), dtype.numpy)


@lower("iota")
def _iota(ctx: Ctx, *, shape: list, axis: int, dtype: DType) -> str:
    axis %= len(shape)
    if all(isinstance(d, int) for d in shape):
        return ctx.const(get_op("iota").reference(shape=shape, axis=axis, dtype=dtype), dtype.numpy)
    n = ctx.op("Squeeze", ctx.ivec(shape[axis]), ctx.const([0]))
    r = ctx.op("Range", ctx.const(0), n, ctx.const(1))
    r = ctx.op("Reshape", r, ctx.const([-1 if i == axis else 1 for i in range(len(shape))]))
    r = ctx.op("Expand", r, ctx.ivec([1 if i == axis else d for i, d in enumerate(shape)]))
    return r if dtype == DType.i64 else ctx.op("Cast", r, to=ONNX_TYPE[dtype])


# -- reductions and scans -------------------------------------------------------------------------
def _reduction(onnx_op: str) -> Lowering:
    def f(ctx: Ctx, x: V, *, axes: list[int], keepdims: bool) -> str:
        if not axes:
            return ctx.op("Identity", x)
        return ctx.op(onnx_op, x, ctx.const(axes), keepdims=int(keepdims))

    return f


for _op, _onnx in {"reduce_sum": "ReduceSum", "reduce_mean": "ReduceMean", "reduce_max": "ReduceMax",
                   "reduce_min": "ReduceMin"}.items():
    lower(_op)(_reduction(_onnx))


lower("argmax")(lambda ctx, x, *, axis, keepdims: ctx.op("ArgMax", x, axis=axis, keepdims=int(keepdims)))
lower("cumsum")(lambda ctx, x, *, axis, exclusive, reverse: ctx.op(
    "CumSum", x, ctx.const(axis), exclusive=int(exclusive), reverse=int(reverse)))
lower("top_k")(lambda ctx, x, *, k: ctx.op("TopK", x, ctx.const([k]), outputs=2, axis=-1, largest=1, sorted=1))


# -- shapes and indexing --------------------------------------------------------------------------
@lower("reshape")
def _reshape(ctx: Ctx, x: V, *, shape: list) -> str:
    # a dim equal to the input's dim at the same place is 0 ("copy"); a single other run-time dim is -1
    target = [0 if isinstance(d, Scalar) and i < x.rank and x.shape[i] == d.expr else d for i, d in enumerate(shape)]
    dynamic = [i for i, d in enumerate(target) if isinstance(d, Scalar)]
    if len(dynamic) == 1 and -1 not in target:
        target[dynamic[0]] = -1
    return ctx.op("Reshape", x, ctx.ivec(target))


lower("transpose")(lambda ctx, x, *, perm: ctx.op("Transpose", x, perm=list(perm)))
lower("concat")(lambda ctx, *xs, axis: ctx.op("Concat", *xs, axis=axis))
lower("gather")(lambda ctx, x, idx, *, axis: ctx.op("Gather", x, idx, axis=axis))  # negative indices count from the end


@lower("broadcast_to")
def _broadcast_to(ctx: Ctx, x: V, *, shape: list) -> str:
    # Expand broadcasts both ways, so a run-time dim the input already has can be given as 1
    lead = len(shape) - x.rank
    target = [1 if isinstance(d, Scalar) and i >= lead and x.shape[i - lead] == d.expr else d
              for i, d in enumerate(shape)]
    return ctx.op("Expand", x, ctx.ivec(target))


@lower("slice")
def _slice(ctx: Ctx, x: V, *, axes: list[int], starts: list[int], stops: list, steps: list[int]) -> str:
    ends = [(_INT64_MAX if st > 0 else -_INT64_MAX - 1) if e is None else e for e, st in zip(stops, steps)]
    return ctx.op("Slice", x, ctx.const(starts), ctx.const(ends), ctx.const(axes), ctx.const(steps))


@lower("pad")
def _pad(ctx: Ctx, x: V, *, pads: list, value: float) -> str:
    flat = [lo for lo, _ in pads] + [hi for _, hi in pads]
    return ctx.op("Pad", x, ctx.const(flat), ctx.const(np.asarray(value).astype(x.dtype.numpy), x.dtype.numpy))


def _starts(ctx: Ctx, x: V, starts: tuple[V, ...], sizes: list) -> list[int | Scalar]:
    """Start indices clamped into [0, dim - size], like lax."""
    return [ctx.clamp(ctx.index(s), 0, ctx.dim(d) - n) for s, d, n in zip(starts, x.shape, sizes)]


@lower("dynamic_slice")
def _dynamic_slice(ctx: Ctx, x: V, *starts: V, sizes: list) -> str:
    begin = ctx.ivec(_starts(ctx, x, starts, sizes))
    return ctx.op("Slice", x, begin, ctx.op("Add", begin, ctx.ivec(sizes)))


@lower("dynamic_update_slice")
def _dynamic_update_slice(ctx: Ctx, x: V, update: V, *starts: V) -> str:
    """ScatterND with a grid of indices over the leading axes the update does not fully cover."""
    k = max((i + 1 for i in range(x.rank) if update.shape[i] != x.shape[i]), default=0)
    if k == 0:
        return ctx.op("Identity", update)
    sizes = [ctx.dim(d) for d in update.shape]
    begin = _starts(ctx, x, starts[:k], sizes[:k])
    grid = [sizes[i] for i in range(k)] + [1]
    columns = []
    for i in range(k):
        r = ctx.op("Range", ctx.op("Squeeze", ctx.ivec(begin[i]), ctx.const([0])),
                   ctx.op("Squeeze", ctx.ivec(begin[i] + sizes[i]), ctx.const([0])), ctx.const(1))
        r = ctx.op("Reshape", r, ctx.const([-1 if j == i else 1 for j in range(k + 1)]))
        columns.append(ctx.op("Expand", r, ctx.ivec(grid)))
    indices = columns[0] if k == 1 else ctx.op("Concat", *columns, axis=-1)
    return ctx.op("ScatterND", x, indices, update)


# -- contractions ---------------------------------------------------------------------------------
@lower("conv")
def _conv(ctx: Ctx, x: V, w: V, *, stride: list, padding: list, dilation: list, groups: int) -> str:
    pads = [lo for lo, _ in padding] + [hi for _, hi in padding]
    return ctx.op("Conv", x, w, strides=list(stride), pads=pads, dilations=list(dilation), group=groups)


# -- composites -----------------------------------------------------------------------------------
lower("softmax")(lambda ctx, x, *, axis: ctx.op("Softmax", x, axis=axis))
lower("log_softmax")(lambda ctx, x, *, axis: ctx.op("LogSoftmax", x, axis=axis))
lower("gelu")(lambda ctx, x, *, approximate: ctx.op("Gelu", x, approximate=approximate))


def _ones(ctx: Ctx, x: V) -> str:
    d = x.shape[-1]
    if isinstance(d, int):
        return ctx.const(np.ones(d, x.dtype.numpy), x.dtype.numpy)
    one = numpy_helper.from_array(np.ones(1, x.dtype.numpy))
    return ctx.op("ConstantOfShape", ctx.op("Shape", x, start=-1), value=one)


@lower("layer_norm")
def _layer_norm(ctx: Ctx, x: V, weight: V | None = None, bias: V | None = None, *, eps: float) -> str:
    # centered first: the kernel's one-pass variance loses precision when |mean| >> std (measured 1.8e-5 -> 3e-7)
    centered = ctx.op("Sub", x, ctx.op("ReduceMean", x, ctx.const([-1]), keepdims=1))
    return ctx.op("LayerNormalization", centered, weight or _ones(ctx, x), bias, axis=-1, epsilon=eps)


@lower("rms_norm")
def _rms_norm(ctx: Ctx, x: V, weight: V | None = None, *, eps: float) -> str:
    return ctx.op("RMSNormalization", x, weight or _ones(ctx, x), axis=-1, epsilon=eps)


@lower("attention")
def _attention(ctx: Ctx, q: V, k: V, v: V, mask: V | None = None, *, scale: float | None, causal: bool) -> str:
    """ONNX `Attention` (opset 23) with one additive [..., Sq, Sk] mask shared by all layers: masked and
    (top-left) causal positions get half the dtype's lowest value, float masks are clamped to it. Any
    score plus that rounds to it, so a fully masked row averages the values like the reference (ONNX
    Runtime's kernel zeroes rows whose scores are all <= the lowest value, or given a bool mask).
    Only a float mask with a row of -inf differs: the reference gives NaN there."""
    key = ("attention bias", None if mask is None else mask.name, causal, q.dtype, q.shape[2], k.shape[2])
    if key not in ctx.memo:  # every layer shares one mask
        ctx.memo[key] = _attention_bias(ctx, q, k, mask, causal)
    bias = ctx.memo[key]
    if k.shape[0] != q.shape[0]:  # ONNX Attention does not broadcast the batch of k/v
        batch = ctx.ivec([ctx.dim(q.shape[0]), 1, 1, 1])
        k, v = (V(ctx.op("Expand", t, batch), t.dtype, t.shape) for t in (k, v))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return ctx.op("Attention", q, k, v, bias, scale=float(scale))


def _attention_bias(ctx: Ctx, q: V, k: V, mask: V | None, causal: bool) -> str | None:
    low = ctx.const(np.finfo(q.dtype.numpy).min / 2, q.dtype.numpy)
    zero = ctx.const(0, q.dtype.numpy)
    bias = None if mask is None else ctx.op("Where", mask, zero, low) if mask.dtype == DType.bool else ctx.op("Max", mask, low)
    sq, sk = ctx.dim(q.shape[2]), ctx.dim(k.shape[2])
    if causal:
        rows = _iota(ctx, shape=[sq, 1], axis=0, dtype=DType.i64)
        cols = _iota(ctx, shape=[1, sk], axis=1, dtype=DType.i64)
        return ctx.op("Where", ctx.op("GreaterOrEqual", rows, cols), bias or zero, low)
    # ONNX Runtime's kernel does not broadcast the mask over query positions: give it [..., Sq, Sk]
    return None if bias is None else ctx.op("Expand", bias, ctx.ivec([1, 1, sq, sk]))
