"""Composite ops: each has a NumPy reference *and* a decomposition into primitives.

A backend lowers a composite natively when it has a fast kernel (torch SDPA, `jax.nn.dot_product_
attention`, ONNX `LayerNormalization`, ...) and otherwise runs the decomposition. Why each exists:
`softmax`/`log_softmax` (attention, heads), `layer_norm`, `rms_norm` (Llama/T5 norms), `gelu`
(exact and tanh), `sigmoid`/`silu` (gated MLPs), `attention` (the fused kernel that matters most).

Attention semantics: q [B,Hq,Sq,D], k [B,Hk,Sk,D], v [B,Hk,Sk,Dv] with Hq a multiple of Hk
(grouped-query); `mask` is bool (True = attend) or float (added to the scores), broadcastable to
[B,Hq,Sq,Sk]; `causal` keeps key j <= query i (top-left aligned, as torch and JAX; applied after the mask); `scale`
defaults to 1/sqrt(D). Masked scores become the dtype's lowest finite value, not -inf, so a fully
masked row averages all values (as transformers does) instead of giving NaN.

Half precision: every composite is "upcast" (`OpDef.half`): lowered natively, it computes f16/bf16
inputs in f32 and rounds the result once; decomposed, each of its (also "upcast") primitives does.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dims as D
from ..builder import fn
from ..dtypes import DType
from ..registry import Attr, OpDef, TensorType, register
from ._common import as_np, broadcast, float_dtype, require, same_dtype
from ._common import axis as norm_axis
from .elementwise import _erf


def _float_unary(name: str):
    def infer(x: TensorType, **attrs) -> list[TensorType]:
        float_dtype(name, x)
        if "axis" in attrs:
            norm_axis(name, attrs["axis"], x.rank)
        return [x]

    return infer


def _ref_softmax(x, *, axis: int):
    x = as_np(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


def _dec_softmax(x, *, axis: int):
    e = fn.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


register(OpDef("softmax", ("x",), _float_unary("softmax"), _ref_softmax, {"axis": Attr("int", -1)},
               half="upcast", decompose=_dec_softmax, doc="exp(x - max) / sum(exp(x - max)) along `axis`"))


def _ref_log_softmax(x, *, axis: int):
    x = as_np(x)
    s = x - np.max(x, axis=axis, keepdims=True)
    return (s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))).astype(x.dtype)


def _dec_log_softmax(x, *, axis: int):
    s = x - x.max(axis, keepdims=True)
    return s - fn.log(fn.exp(s).sum(axis, keepdims=True))


register(OpDef("log_softmax", ("x",), _float_unary("log_softmax"), _ref_log_softmax, {"axis": Attr("int", -1)},
               half="upcast", decompose=_dec_log_softmax, doc="x - logsumexp(x) along `axis`"))


def _infer_norm(name: str):
    def infer(x: TensorType, weight: TensorType | None = None, bias: TensorType | None = None, **_) -> list[TensorType]:
        float_dtype(name, x)
        for p in (weight, bias):
            if p is not None:
                require(p.shape == x.shape[-1:], f"{name}: weight/bias must have shape {D.fmt(x.shape[-1:])}, got {D.fmt(p.shape)}")
                same_dtype(name, x, p)
        return [x]

    return infer


def _ref_layer_norm(x, weight=None, bias=None, *, eps: float):
    dtype, x = as_np(x).dtype, as_np(x).astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    y = y if weight is None else y * weight
    return (y if bias is None else y + bias).astype(dtype)


def _dec_layer_norm(x, weight=None, bias=None, *, eps: float):
    centered = x - x.mean(-1, keepdims=True)
    y = centered * fn.rsqrt((centered * centered).mean(-1, keepdims=True) + eps)
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


register(OpDef("layer_norm", ("x", "?weight", "?bias"), _infer_norm("layer_norm"), _ref_layer_norm,
               {"eps": Attr("float", 1e-5)}, half="upcast", decompose=_dec_layer_norm,
               doc="(x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance)"))


def _ref_rms_norm(x, weight=None, *, eps: float):
    dtype, x = as_np(x).dtype, as_np(x).astype(np.float64)
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return (y if weight is None else y * weight).astype(dtype)


def _dec_rms_norm(x, weight=None, *, eps: float):
    y = x * fn.rsqrt((x * x).mean(-1, keepdims=True) + eps)
    return y if weight is None else y * weight


register(OpDef("rms_norm", ("x", "?weight"), _infer_norm("rms_norm"), _ref_rms_norm,
               {"eps": Attr("float", 1e-6)}, half="upcast", decompose=_dec_rms_norm,
               doc="x / sqrt(mean(x**2) + eps) * weight over the last axis"))

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _ref_gelu(x, *, approximate: str):
    x = as_np(x)
    if approximate == "tanh":
        y = 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
    else:
        y = 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    return y.astype(x.dtype)


def _dec_gelu(x, *, approximate: str):
    if approximate == "tanh":
        return 0.5 * x * (1.0 + fn.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1.0 + fn.erf(x * (1.0 / math.sqrt(2.0))))


register(OpDef("gelu", ("x",), _float_unary("gelu"), _ref_gelu,
               {"approximate": Attr("str", "none", choices=("none", "tanh"))}, half="upcast",
               decompose=_dec_gelu,
               doc="x * Phi(x), exact (erf) or with the tanh approximation"))


def _ref_sigmoid(x):
    x = as_np(x)
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


register(OpDef("sigmoid", ("x",), _float_unary("sigmoid"), _ref_sigmoid,
               half="upcast", decompose=lambda x: 1.0 / (1.0 + fn.exp(-x)), doc="1 / (1 + exp(-x))"))
register(OpDef("silu", ("x",), _float_unary("silu"), lambda x: (as_np(x) * _ref_sigmoid(x)).astype(as_np(x).dtype),
               half="upcast", decompose=lambda x: x * fn.sigmoid(x), doc="x * sigmoid(x) (a.k.a. swish)"))


def _infer_attention(q: TensorType, k: TensorType, v: TensorType, mask: TensorType | None = None, *,
                     scale, causal: bool) -> list[TensorType]:
    dt = same_dtype("attention", q, k, v)
    float_dtype("attention", q)
    require(q.rank == k.rank == v.rank == 4, "attention: q, k, v must be [batch, heads, seq, head_dim]")
    require(q.shape[-1] == k.shape[-1], f"attention: q and k head dims differ: {D.fmt(q.shape)}, {D.fmt(k.shape)}")
    require(k.shape[:3] == v.shape[:3] or D.broadcast_shapes(k.shape[:3], v.shape[:3]) == k.shape[:3],
            f"attention: k {D.fmt(k.shape)} and v {D.fmt(v.shape)} differ")
    hq, hk = q.shape[1], k.shape[1]
    require(isinstance(hq, int) and isinstance(hk, int) and hq % hk == 0,
            f"attention: query heads {hq} must be a multiple of key/value heads {hk}")
    out = (q.shape[0], hq, q.shape[2], v.shape[3])
    if mask is not None:
        require(mask.dtype == DType.bool or mask.dtype == dt, f"attention: mask must be bool or {dt}, got {mask.dtype}")
        require(mask.rank <= 4, "attention: mask rank must be <= 4")
        broadcast("attention mask", mask, TensorType(out[:3] + (k.shape[2],), dt))
    return [TensorType(out, dt)]


def _ref_attention(q, k, v, mask=None, *, scale, causal: bool):
    q, k, v = as_np(q), as_np(k), as_np(v)
    groups = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ np.swapaxes(k, -1, -2)) * np.asarray(scale, q.dtype)
    low = np.finfo(s.dtype).min
    if mask is not None:
        mask = as_np(mask)
        s = np.where(mask, s, low) if mask.dtype == np.bool_ else s + mask
    if causal:
        sq, sk = s.shape[-2:]
        s = np.where(np.tril(np.ones((sq, sk), bool)), s, low)
    return (_ref_softmax(s, axis=-1) @ v).astype(q.dtype)


def _repeat_heads(x, heads: int):
    """[b, kv_heads, s, d] -> [b, heads, s, d], each kv head repeated for its group of query heads."""
    b, hk, s, d = x.shape
    if hk == heads:
        return x
    return fn.broadcast_to(x.reshape(b, hk, 1, s, d), shape=[b, hk, heads // hk, s, d]).reshape(b, heads, s, d)


def attention_probabilities(q, k, mask=None, *, scale, causal: bool):
    """The weights the ``attention`` op applies to ``v``: softmax(q @ k^T * scale + mask) as IR ops,
    [batch, heads, seq_q, seq_k] (masked keys get exactly 0, as in transformers' eager attention)."""
    sq, d, sk = q.shape[2], q.shape[3], k.shape[2]
    s = (q @ _repeat_heads(k, q.shape[1]).transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(d) if scale is None else scale)
    low = q.builder.constant(q.dtype.lowest, q.dtype)
    if mask is not None:
        s = fn.where(mask, s, low) if mask.dtype == DType.bool else s + mask
    if causal:
        g = q.builder
        keep = fn.ge(g.add("iota", shape=[sq, sk], axis=0), g.add("iota", shape=[sq, sk], axis=1))
        s = fn.where(keep, s, low)
    return fn.softmax(s, axis=-1)


def _dec_attention(q, k, v, mask=None, *, scale, causal: bool):
    return attention_probabilities(q, k, mask, scale=scale, causal=causal) @ _repeat_heads(v, q.shape[1])


register(OpDef("attention", ("q", "k", "v", "?mask"), _infer_attention, _ref_attention,
               {"scale": Attr("opt_float", None), "causal": Attr("bool", False)}, half="upcast",
               decompose=_dec_attention,
               doc="softmax(q @ k^T * scale + mask) @ v with grouped-query heads; see the module docstring"))


def _ref_dropout(x, *, rate: float):
    return as_np(x)


def _infer_dropout(x: TensorType, *, rate: float) -> list[TensorType]:
    float_dtype("dropout", x)
    require(0.0 <= rate < 1.0, f"dropout: rate must be in [0, 1), got {rate}")
    return [x]


register(OpDef("dropout", ("x",), _infer_dropout, _ref_dropout, {"rate": Attr("float")}, half="native",
               decompose=lambda x, *, rate: x,
               doc="identity (inference); programs compiled for training (`Backend.prepare(graph, training=True)`) "
                   "zero each element with probability `rate` and scale the rest by 1 / (1 - rate)"))
