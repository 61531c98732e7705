"""Shape and indexing ops.

Why each exists: `reshape` and `transpose` split and merge attention heads; `broadcast_to` expands
masks and grouped-query K/V; `slice` takes the CLS token, halves for rotary embeddings and
windows; `concat` joins rotary halves and fused projections; `gather` is the embedding lookup;
`pad` pads convolutions and position tables; `dynamic_slice`/`dynamic_update_slice` read and
write a static-size KV cache at a position given as a tensor.

Half precision: all are "native" (`OpDef.half`): they move data, exact in any dtype, so f16/bf16
values stay in their own dtype.
"""

from __future__ import annotations

import numpy as np

from .. import dims as D
from ..registry import Attr, OpDef, TensorType, register
from ._common import as_np, require, same_dtype
from ._common import axis as norm_axis


def _infer_reshape(x: TensorType, *, shape) -> list[TensorType]:
    require(shape.count(-1) <= 1, f"reshape: at most one -1 in shape {shape}")
    require(all(not isinstance(d, int) or d >= -1 for d in shape), f"reshape: invalid target shape {shape}")
    total = D.product(x.shape)
    if -1 in shape:
        known = D.product([d for d in shape if d != -1])
        rest = D.div_exact(total, known)
        require(rest is not None, f"reshape: cannot infer -1 of {D.fmt(tuple(shape))} from {D.fmt(x.shape)}")
        shape = [rest if d == -1 else d for d in shape]
    out_total = D.product(shape)
    if _comparable(total, out_total):
        require(out_total == total, f"reshape: {D.fmt(x.shape)} has {total} elements, {D.fmt(tuple(shape))} has {out_total}")
    return [TensorType(tuple(shape), x.dtype)]


def _comparable(a: D.Dim, b: D.Dim) -> bool:
    """Whether two element counts can be compared symbolically (no opaque divisions involved)."""
    return not any("//" in str(d) for d in (a, b))


register(OpDef("reshape", ("x",), _infer_reshape,
               lambda x, *, shape: as_np(x).reshape([int(d) for d in shape]), {"shape": Attr("dims")},
               half="native", doc="same elements, new shape; dims may be symbolic, one may be -1"))


def _infer_transpose(x: TensorType, *, perm) -> list[TensorType]:
    require(sorted(perm) == list(range(x.rank)), f"transpose: perm {perm} is not a permutation of rank {x.rank}")
    return [TensorType(tuple(x.shape[p] for p in perm), x.dtype)]


register(OpDef("transpose", ("x",), _infer_transpose, lambda x, *, perm: np.transpose(as_np(x), perm).copy(),
               {"perm": Attr("ints")}, half="native", doc="permute axes"))


def _infer_broadcast_to(x: TensorType, *, shape) -> list[TensorType]:
    require(len(shape) >= x.rank, f"broadcast_to: cannot broadcast rank {x.rank} to rank {len(shape)}")
    for d, t in zip(x.shape[::-1], shape[::-1]):
        require(d == 1 or D.broadcast(d, t) == t, f"broadcast_to: {D.fmt(x.shape)} does not broadcast to {D.fmt(tuple(shape))}")
    return [TensorType(tuple(shape), x.dtype)]


register(OpDef("broadcast_to", ("x",), _infer_broadcast_to,
               lambda x, *, shape: np.broadcast_to(as_np(x), [int(d) for d in shape]).copy(), {"shape": Attr("dims")},
               half="native", doc="NumPy broadcast to `shape` (dims may be symbolic)"))


def _slice_len(d: D.Dim, start: int, stop: int | None, step: int) -> D.Dim:
    if isinstance(d, int):
        return len(range(*slice(start, stop, step).indices(d)))
    require(step > 0, "slice: negative steps need a concrete dim")
    lo = D.add(d, start) if start < 0 else start
    hi = d if stop is None else (D.add(d, stop) if stop < 0 else stop)
    n = D.sub(hi, lo)
    return n if step == 1 else D.floordiv(D.add(n, step - 1), step)


def _infer_slice(x: TensorType, *, axes, starts, stops, steps) -> list[TensorType]:
    require(len(axes) == len(starts) == len(stops) == len(steps), "slice: axes, starts, stops, steps differ in length")
    shape = list(x.shape)
    for a, s, e, st in zip(axes, starts, stops, steps):
        require(st != 0, "slice: step 0")
        a = norm_axis("slice", a, x.rank)
        shape[a] = _slice_len(shape[a], s, e, st)
    return [TensorType(tuple(shape), x.dtype)]


def _ref_slice(x, *, axes, starts, stops, steps):
    x = as_np(x)
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, stops, steps):
        index[a] = slice(s, e, st)
    return x[tuple(index)].copy()


register(OpDef("slice", ("x",), _infer_slice, _ref_slice,
               {"axes": Attr("ints"), "starts": Attr("ints"), "stops": Attr("opt_ints"), "steps": Attr("ints")},
               half="native", doc="static Python-style slicing x[start:stop:step] on `axes` (negative indices count from the end; stop null = end)"))


def _infer_concat(*xs: TensorType, axis: int) -> list[TensorType]:
    require(len(xs) >= 1, "concat: needs at least one input")
    dt = same_dtype("concat", *xs)
    rank = xs[0].rank
    require(all(x.rank == rank for x in xs), "concat: inputs differ in rank")
    a = norm_axis("concat", axis, rank)
    shape = list(xs[0].shape)
    for x in xs[1:]:
        for i in range(rank):
            if i != a:
                require(shape[i] == x.shape[i] or isinstance(shape[i], int) != isinstance(x.shape[i], int),
                        f"concat: shapes {D.fmt(xs[0].shape)} and {D.fmt(x.shape)} differ off axis {axis}")
        shape[a] = D.add(shape[a], x.shape[a])
    return [TensorType(tuple(shape), dt)]


register(OpDef("concat", ("*xs",), _infer_concat, lambda *xs, axis: np.concatenate([as_np(x) for x in xs], axis),
               {"axis": Attr("int")}, half="native", doc="join inputs along `axis`"))


def _infer_gather(x: TensorType, idx: TensorType, *, axis: int) -> list[TensorType]:
    require(idx.dtype.is_int, f"gather: indices must be i32/i64, got {idx.dtype}")
    a = norm_axis("gather", axis, x.rank)
    return [TensorType(x.shape[:a] + idx.shape + x.shape[a + 1:], x.dtype)]


def _ref_gather(x, idx, *, axis):
    x, idx = as_np(x), as_np(idx)
    n = x.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"gather: index out of range [{-n}, {n}) (got {idx.min()}..{idx.max()})")
    return np.take(x, idx, axis=axis)


register(OpDef("gather", ("x", "indices"), _infer_gather, _ref_gather, {"axis": Attr("int", 0)},
               half="native", doc="np.take(x, indices, axis): output shape x[:axis] + indices + x[axis+1:]; indices must be in range"))


def _infer_pad(x: TensorType, *, pads, value) -> list[TensorType]:
    require(len(pads) == x.rank, f"pad: needs {x.rank} [low, high] pairs, got {len(pads)}")
    require(all(lo >= 0 and hi >= 0 for lo, hi in pads), "pad: pads must be non-negative")
    return [TensorType(tuple(D.add(D.add(d, lo), hi) for d, (lo, hi) in zip(x.shape, pads)), x.dtype)]


register(OpDef("pad", ("x",), _infer_pad,
               lambda x, *, pads, value: np.pad(as_np(x), pads, constant_values=np.asarray(value).astype(as_np(x).dtype)),
               {"pads": Attr("pads"), "value": Attr("float", 0.0)}, half="native", doc="constant padding, [low, high] per axis"))


def _check_starts(op: str, x: TensorType, starts) -> None:
    require(len(starts) == x.rank, f"{op}: needs {x.rank} start indices, got {len(starts)}")
    for s in starts:
        require(s is not None and s.rank == 0 and s.dtype.is_int, f"{op}: start indices must be integer scalars")


def _infer_dynamic_slice(x: TensorType, *starts: TensorType, sizes) -> list[TensorType]:
    _check_starts("dynamic_slice", x, starts)
    require(len(sizes) == x.rank, f"dynamic_slice: needs {x.rank} sizes")
    return [TensorType(tuple(sizes), x.dtype)]


def _clamped(x: np.ndarray, starts, sizes) -> tuple[slice, ...]:
    out = []
    for s, n, d in zip(starts, sizes, x.shape):
        s = int(min(max(int(s), 0), d - int(n)))
        out.append(slice(s, s + int(n)))
    return tuple(out)


register(OpDef("dynamic_slice", ("x", "*starts"), _infer_dynamic_slice,
               lambda x, *starts, sizes: as_np(x)[_clamped(as_np(x), starts, sizes)].copy(), {"sizes": Attr("dims")},
               half="native", doc="x[starts : starts+sizes] with starts as integer scalar tensors, clamped into range (like lax.dynamic_slice)"))


def _infer_dus(x: TensorType, update: TensorType, *starts: TensorType) -> list[TensorType]:
    same_dtype("dynamic_update_slice", x, update)
    require(update.rank == x.rank, "dynamic_update_slice: update rank differs from x")
    _check_starts("dynamic_update_slice", x, starts)
    return [x]


def _ref_dus(x, update, *starts):
    out = as_np(x).copy()
    update = as_np(update)
    out[_clamped(out, starts, update.shape)] = update
    return out


register(OpDef("dynamic_update_slice", ("x", "update", "*starts"), _infer_dus, _ref_dus,
               half="native", doc="x with `update` written at `starts` (integer scalars, clamped like lax.dynamic_update_slice)"))
