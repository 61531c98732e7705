"""Reductions and scans.

Why each exists: `reduce_sum`/`reduce_mean` for norms, pooling and losses; `reduce_max`/`reduce_min`
for numerically stable softmax and masks; `argmax` for greedy decoding; `top_k` for top-k sampling
and beam search; `cumsum` for position ids from padding masks (RoBERTa, left-padded decoders).

Half precision (`OpDef.half`): all are "upcast": f16/bf16 inputs are computed in f32 and the result
rounded once (for max, min, argmax and top_k that changes no value).
"""

from __future__ import annotations

import numpy as np

from ..dtypes import DType
from ..registry import Attr, OpDef, TensorType, register
from ._common import as_np, require
from ._common import axis as norm_axis


def _reduced(op: str, x: TensorType, axes, keepdims: bool) -> tuple:
    norm = sorted({norm_axis(op, a, x.rank) for a in axes})
    require(len(norm) == len(axes), f"{op}: repeated axes {axes}")
    if keepdims:
        return tuple(1 if i in norm else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in norm)


def _reduction(name: str, ref, *, floats: bool = False, doc: str = "") -> None:
    def infer(x: TensorType, *, axes, keepdims: bool) -> list[TensorType]:
        require(x.dtype != DType.bool, f"{name}: needs a numeric input")
        require(not floats or x.dtype.is_float, f"{name}: needs a float input, got {x.dtype}")
        return [TensorType(_reduced(name, x, axes, keepdims), x.dtype)]

    def reference(x, *, axes, keepdims: bool):
        x = as_np(x)
        return np.asarray(ref(x, axis=tuple(axes), keepdims=keepdims)).astype(x.dtype)

    register(OpDef(name, ("x",), infer, reference, {"axes": Attr("ints"), "keepdims": Attr("bool", False)},
                   half="upcast", doc=doc))


_reduction("reduce_sum", np.sum, doc="sum over `axes`")
_reduction("reduce_mean", np.mean, floats=True, doc="mean over `axes` (floats)")
_reduction("reduce_max", np.max, doc="max over `axes`")
_reduction("reduce_min", np.min, doc="min over `axes`")


def _infer_argmax(x: TensorType, *, axis: int, keepdims: bool) -> list[TensorType]:
    require(x.dtype != DType.bool, "argmax: needs a numeric input")
    return [TensorType(_reduced("argmax", x, [axis], keepdims), DType.i64)]


register(OpDef("argmax", ("x",), _infer_argmax,
               lambda x, *, axis, keepdims: np.argmax(as_np(x), axis=axis, keepdims=keepdims).astype(np.int64),
               {"axis": Attr("int"), "keepdims": Attr("bool", False)}, half="upcast",
               doc="index of the max along `axis` (first one on ties), i64"))


def _infer_cumsum(x: TensorType, *, axis: int, exclusive: bool, reverse: bool) -> list[TensorType]:
    require(x.dtype != DType.bool, "cumsum: needs a numeric input")
    norm_axis("cumsum", axis, x.rank)
    return [x]


def _ref_cumsum(x, *, axis: int, exclusive: bool, reverse: bool):
    x = as_np(x)
    y = np.flip(x, axis) if reverse else x
    out = np.cumsum(y, axis=axis, dtype=x.dtype)
    if exclusive:
        out = out - y
    return np.ascontiguousarray(np.flip(out, axis) if reverse else out)


register(OpDef("cumsum", ("x",), _infer_cumsum, _ref_cumsum,
               {"axis": Attr("int"), "exclusive": Attr("bool", False), "reverse": Attr("bool", False)},
               half="upcast",
               doc="running sum along `axis`; `exclusive` leaves out the element itself, `reverse` runs from the end"))


def _infer_top_k(x: TensorType, *, k: int) -> list[TensorType]:
    require(x.rank >= 1 and x.dtype != DType.bool, "top_k: needs a numeric input of rank >= 1")
    last = x.shape[-1]
    require(k >= 1 and (not isinstance(last, int) or k <= last), f"top_k: k={k} is out of range for last dim {last}")
    shape = x.shape[:-1] + (k,)
    return [TensorType(shape, x.dtype), TensorType(shape, DType.i64)]


def _ref_top_k(x, *, k: int):
    x = as_np(x)
    idx = np.argsort(-x.astype(np.float64), axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, idx, axis=-1), idx.astype(np.int64)


register(OpDef("top_k", ("x",), _infer_top_k, _ref_top_k, {"k": Attr("int")}, num_outputs=2,
               half="upcast",
               doc="the k largest values along the last axis, descending, and their i64 indices (lower index first on ties)"))
