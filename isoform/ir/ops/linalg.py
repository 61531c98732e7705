"""Contractions.

Why each exists: `matmul` is every projection and the attention products (batched, NumPy
broadcasting over leading dims); `conv` is the patch embedding of vision models and the feature
encoder of speech models (1-d/2-d, stride, padding, dilation, groups; PyTorch's NC* layout).
Both are "upcast" (`OpDef.half`): f16/bf16 operands are multiplied and accumulated in f32, rounded once.
"""

from __future__ import annotations

import numpy as np

from .. import dims as D
from ..registry import Attr, OpDef, TensorType, register
from ._common import as_np, float_dtype, require, same_dtype


def _infer_matmul(a: TensorType, b: TensorType) -> list[TensorType]:
    dt = same_dtype("matmul", a, b)
    require(a.rank >= 2 and b.rank >= 2, f"matmul: inputs need rank >= 2, got {D.fmt(a.shape)} and {D.fmt(b.shape)}")
    k1, k2 = a.shape[-1], b.shape[-2]
    require(D.broadcast(k1, k2) is not None and (k1 == k2 or 1 not in (k1, k2)),
            f"matmul: contracting dims differ: {D.fmt(a.shape)} @ {D.fmt(b.shape)}")
    batch = D.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    require(batch is not None, f"matmul: batch dims of {D.fmt(a.shape)} and {D.fmt(b.shape)} do not broadcast")
    return [TensorType(batch + (a.shape[-2], b.shape[-1]), dt)]


def _ref_matmul(a, b):
    a, b = as_np(a), as_np(b)
    if a.dtype.kind == "f":
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
    return np.matmul(a, b)


register(OpDef("matmul", ("a", "b"), _infer_matmul, _ref_matmul, half="upcast",
               doc="a @ b over the last two dims, leading dims broadcast (float math accumulates in f64 in the reference)"))


def _infer_conv(x: TensorType, w: TensorType, *, stride, padding, dilation, groups) -> list[TensorType]:
    dt = same_dtype("conv", x, w)
    float_dtype("conv", x)
    n = x.rank - 2
    require(n in (1, 2, 3) and w.rank == x.rank, f"conv: needs x [N,C,*spatial] and w [O,C/groups,*k] of one rank, got {D.fmt(x.shape)}, {D.fmt(w.shape)}")
    require(len(stride) == len(dilation) == len(padding) == n, f"conv: stride/dilation/padding need {n} entries")
    require(groups >= 1 and w.shape[0] % groups == 0, f"conv: {w.shape[0]} output channels not divisible by groups={groups}")
    cin = x.shape[1]
    require(not isinstance(cin, int) or cin == w.shape[1] * groups,
            f"conv: input has {cin} channels, weight expects {w.shape[1]} x groups={groups}")
    spatial = []
    for size, k, s, d, (lo, hi) in zip(x.shape[2:], w.shape[2:], stride, dilation, padding):
        span = D.sub(D.add(size, lo + hi), d * (k - 1) + 1)
        spatial.append(D.add(D.floordiv(span, s), 1))
    return [TensorType((x.shape[0], w.shape[0], *spatial), dt)]


def _ref_conv(x, w, *, stride, padding, dilation, groups):
    x, w = as_np(x).astype(np.float64), as_np(w).astype(np.float64)
    n = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0), *[tuple(p) for p in padding]])
    out_ch, cpg = w.shape[0], w.shape[1]
    opg = out_ch // groups
    k = w.shape[2:]
    out_sp = [(x.shape[2 + i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(n)]
    out = np.zeros((x.shape[0], out_ch, *out_sp))
    for offs in np.ndindex(*k):
        idx = tuple(slice(o * d, o * d + (m - 1) * s + 1, s) for o, d, s, m in zip(offs, dilation, stride, out_sp))
        patch = x[(slice(None), slice(None), *idx)]  # N, C, *out_sp
        for g in range(groups):
            wg = w[g * opg:(g + 1) * opg, :, *offs]  # opg, cpg
            out[:, g * opg:(g + 1) * opg] += np.einsum("nc...,oc->no...", patch[:, g * cpg:(g + 1) * cpg], wg)
    return out


register(OpDef("conv", ("x", "w"), _infer_conv, lambda x, w, **a: _ref_conv(x, w, **a).astype(as_np(x).dtype),
               {"stride": Attr("ints"), "padding": Attr("pads"), "dilation": Attr("ints"), "groups": Attr("int", 1)},
               half="upcast",
               doc="cross-correlation like torch.nn.functional.conv{1,2,3}d: x [N,C,*S], w [O,C/groups,*K], no bias"))
