"""Conformance cases: for every op, inputs and attributes that exercise its shape rule (random
shapes, size-1 dims, broadcasting, symbolic dims), every dtype it takes, and its edge values."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np

F32, F16, BF16 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)
I32, I64, BOOL = np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.bool_)
FLOATS = (F32, F16, BF16)
INTS = (I32, I64)


@dataclass
class Case:
    """One op application: input arrays (None for a skipped optional input), attributes, and which
    input axes are declared with symbolic names (``{input index: {axis: name}}``)."""

    op: str
    inputs: list[np.ndarray | None]
    attrs: dict[str, Any] = field(default_factory=dict)
    symbolic: dict[int, dict[int, str]] = field(default_factory=dict)
    tag: str = ""
    extra: list[np.ndarray] = field(default_factory=list)  # graph inputs not passed to the op (define dims)

    def __str__(self) -> str:
        shapes = ", ".join("None" if x is None else f"{x.dtype}{list(x.shape)}" for x in self.inputs)
        return f"{self.op}({shapes}{', ' if self.attrs else ''}{', '.join(f'{k}={v}' for k, v in self.attrs.items())}) {self.tag}".strip()


class _Gen:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def shape(self, rank: int, lo: int = 1, hi: int = 6) -> tuple[int, ...]:
        return tuple(int(self.rng.integers(lo, hi + 1)) for _ in range(rank))

    def array(self, shape, dtype, lo: float = -3.0, hi: float = 3.0) -> np.ndarray:
        dtype = np.dtype(dtype)
        if dtype == BOOL:
            return self.rng.random(shape) < 0.5
        if dtype.kind in "iu":
            return self.rng.integers(int(lo), int(hi) + 1, size=shape).astype(dtype)
        return self.rng.uniform(lo, hi, size=shape).astype(dtype)

    def broadcast_pair(self, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        a = self.shape(rank)
        b = tuple(1 if self.rng.random() < 0.35 else d for d in a)
        b = b[int(self.rng.integers(0, rank)):] if self.rng.random() < 0.5 else b
        return (a, b) if self.rng.random() < 0.5 else (b, a)


UNARY_DOMAIN = {"log": (0.05, 4.0), "sqrt": (0.0, 4.0), "rsqrt": (0.05, 4.0), "exp": (-5.0, 5.0)}


def all_cases(seed: int = 0) -> Iterator[Case]:
    """Every conformance case, deterministic for a seed."""
    g = _Gen(seed)
    yield from _elementwise(g)
    yield from _reductions(g)
    yield from _shape_ops(g)
    yield from _linalg(g)
    yield from _composites(g)


def _elementwise(g: _Gen) -> Iterator[Case]:
    for op in ("exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sin", "cos", "floor", "neg", "abs"):
        lo, hi = UNARY_DOMAIN.get(op, (-3.0, 3.0))
        for dt in FLOATS:
            yield Case(op, [g.array(g.shape(3), dt, lo, hi)])
        yield Case(op, [g.array((2, 7), F32, lo, hi)], symbolic={0: {0: "batch", 1: "seq"}}, tag="symbolic dims")
    yield Case("log", [np.array([0.0, 1.0, np.inf], F32)], tag="edge: log(0)=-inf")
    yield Case("exp", [np.array([-np.inf, -100.0, 0.0, 80.0], F32)], tag="edge: exp(-inf)=0, overflow")
    yield Case("tanh", [np.array([-40.0, -1e-6, 0.0, 40.0], F32)], tag="edge: saturation")
    for op in ("neg", "abs"):
        for dt in INTS:
            yield Case(op, [g.array(g.shape(2), dt, -9, 9)])
    for op in ("add", "sub", "mul", "div", "pow", "maximum", "minimum"):
        for dt in FLOATS:
            a, b = g.broadcast_pair(3)
            lo = 0.1 if op in ("pow", "div") else -3.0
            yield Case(op, [g.array(a, dt, lo, 3.0), g.array(b, dt, lo, 3.0)], tag="broadcast")
        if op not in ("div", "pow"):
            for dt in INTS:
                yield Case(op, [g.array((3, 4), dt, -9, 9), g.array((4,), dt, -9, 9)])
        yield Case(op, [g.array((2, 5, 3), F32, 0.1), g.array((1, 5, 1), F32, 0.1)],
                   symbolic={0: {0: "batch", 1: "seq"}}, tag="symbolic + broadcast")
    yield Case("maximum", [np.array([-np.inf, 1.0, np.inf], F32), np.array([0.0, np.inf, -np.inf], F32)], tag="edge: infinities")
    for op in ("eq", "ne", "lt", "le", "gt", "ge"):
        for dt in (F32, BF16, I64, I32):
            a, b = g.broadcast_pair(2)
            yield Case(op, [g.array(a, dt, -2, 2), g.array(b, dt, -2, 2)])
        yield Case(op, [g.array((3, 3), BOOL), g.array((3, 3), BOOL)])
    for op in ("logical_and", "logical_or"):
        a, b = g.broadcast_pair(3)
        yield Case(op, [g.array(a, BOOL), g.array(b, BOOL)])
    yield Case("logical_not", [g.array((4, 3), BOOL)])
    for dt in (*FLOATS, I64, BOOL):
        c, a = g.broadcast_pair(3)
        yield Case("where", [g.array(c, BOOL), g.array(a, dt), g.array((1,), dt)], tag="broadcast")
    yield Case("where", [g.array((2, 1, 4), BOOL), g.array((2, 3, 4), F32), np.array(-np.inf, F32)], tag="edge: -inf fill")
    for src, dst in [(F32, F16), (F32, BF16), (F16, F32), (BF16, F32), (F32, I64), (F32, I32), (I64, F32),
                     (I64, I32), (I32, I64), (BOOL, F32), (I64, BOOL), (F32, BOOL)]:
        yield Case("cast", [g.array((3, 5), src, -7.9, 7.9)], {"dtype": _name(dst)})
    yield Case("cast", [np.array([-2.7, -0.5, 0.5, 2.7], F32)], {"dtype": "i64"}, tag="edge: truncation toward zero")
    for dt in ("f32", "f16", "bf16", "i64", "i32", "bool"):
        yield Case("constant", [], {"value": [[1, 0], [3, 4]] if dt != "bool" else [True, False], "dtype": dt})
    yield Case("constant", [], {"value": float("-inf"), "dtype": "f32"}, tag="edge: -inf")
    for dt in ("i64", "i32", "f32"):
        yield Case("iota", [], {"shape": [3, 4], "axis": 1, "dtype": dt})
    yield Case("iota", [], {"shape": ["n", 3], "axis": 0, "dtype": "i64"}, extra=[g.array((5, 2), F32)],
               symbolic={0: {0: "n"}}, tag="symbolic shape")


def _name(dt: np.dtype) -> str:
    from ..ir.dtypes import as_dtype

    return as_dtype(dt).value


def _reductions(g: _Gen) -> Iterator[Case]:
    for op in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min"):
        for dt in FLOATS:
            yield Case(op, [g.array(g.shape(3), dt)], {"axes": [-1], "keepdims": True})
            yield Case(op, [g.array(g.shape(3), dt)], {"axes": [0, 2], "keepdims": False})
        if op != "reduce_mean":
            yield Case(op, [g.array((3, 4), I64, -9, 9)], {"axes": [1]})
        yield Case(op, [g.array((2, 6, 4), F32)], {"axes": [1]}, symbolic={0: {1: "seq"}}, tag="symbolic")
    yield Case("reduce_max", [np.array([[-np.inf, -np.inf], [-1e30, -np.inf]], F32)], {"axes": [1]}, tag="edge: -inf")
    for dt in (F32, BF16, I64):
        yield Case("argmax", [g.array(g.shape(3, 2, 5), dt)], {"axis": -1})
        yield Case("argmax", [g.array(g.shape(3, 2, 5), dt)], {"axis": 0, "keepdims": True})
    yield Case("argmax", [np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], F32)], {"axis": 1}, tag="edge: ties -> first")
    for dt in (F32, I64, I32, F16):
        for exclusive in (False, True):
            for reverse in (False, True):
                yield Case("cumsum", [g.array((3, 5), dt, -3, 3)], {"axis": 1, "exclusive": exclusive, "reverse": reverse})
    yield Case("cumsum", [g.array((2, 7), I64, 0, 1)], {"axis": -1}, symbolic={0: {0: "batch", 1: "seq"}},
               tag="position ids from a mask")
    for dt in (F32, BF16, I64):
        for k in (1, 3):
            yield Case("top_k", [g.array((2, 3, 6), dt, -50, 50)], {"k": k})
    yield Case("top_k", [np.array([[1.0, 5.0, 5.0, 2.0, 5.0]], F32)], {"k": 3}, tag="edge: ties -> lower index first")
    yield Case("top_k", [np.array([[-np.inf, 0.0, -np.inf, -1e30]], F32)], {"k": 2}, tag="edge: -inf")


def _shape_ops(g: _Gen) -> Iterator[Case]:
    for dt in (F32, BF16, I64, BOOL):
        yield Case("reshape", [g.array((2, 3, 4), dt)], {"shape": [6, -1]})
    yield Case("reshape", [g.array((2, 5, 12), F32)], {"shape": ["batch", "seq", 3, 4]},
               symbolic={0: {0: "batch", 1: "seq"}}, tag="split heads")
    yield Case("reshape", [g.array((2, 5, 3, 4), F32)], {"shape": ["batch", "seq", -1]},
               symbolic={0: {0: "batch", 1: "seq"}}, tag="merge heads")
    yield Case("reshape", [g.array((2, 5, 3), F32)], {"shape": ["batch*seq", 3]},
               symbolic={0: {0: "batch", 1: "seq"}}, tag="flatten symbolic")
    for dt in (F32, I64, BOOL):
        yield Case("transpose", [g.array((2, 3, 4, 5), dt)], {"perm": [0, 2, 1, 3]})
    yield Case("transpose", [g.array((4, 1, 3), F32)], {"perm": [2, 0, 1]})
    yield Case("broadcast_to", [g.array((3, 1), F32)], {"shape": [2, 3, 4]})
    yield Case("broadcast_to", [g.array((2, 1, 1, 6), BOOL)], {"shape": ["batch", 3, 6, "seq"]},
               symbolic={0: {0: "batch", 3: "seq"}}, tag="mask to scores")
    for dt in (F32, I64, BOOL, F16):
        yield Case("slice", [g.array((4, 7, 3), dt)], {"axes": [1], "starts": [1], "stops": [5], "steps": [2]})
    yield Case("slice", [g.array((4, 7, 3), F32)], {"axes": [0, 2], "starts": [-2, 0], "stops": [None, 1], "steps": [1, 1]})
    yield Case("slice", [g.array((2, 9, 8), F32)], {"axes": [1, 2], "starts": [0, 4], "stops": [1, None], "steps": [1, 1]},
               symbolic={0: {1: "seq"}}, tag="CLS token / second half")
    yield Case("slice", [g.array((6, 4), F32)], {"axes": [0], "starts": [2], "stops": [100], "steps": [1]}, tag="stop past end")
    for dt in (F32, I64, BF16):
        yield Case("concat", [g.array((2, 3), dt), g.array((2, 1), dt), g.array((2, 4), dt)], {"axis": 1})
    yield Case("concat", [g.array((2, 5, 3), F32), g.array((2, 5, 3), F32)], {"axis": -1},
               symbolic={0: {1: "seq"}, 1: {1: "seq"}}, tag="rotary halves")
    yield Case("concat", [g.array((2, 5, 3), F32), g.array((2, 4, 3), F32)], {"axis": 1},
               symbolic={0: {1: "a"}, 1: {1: "b"}}, tag="symbolic concat axis")
    for dt in (F32, BF16, I64):
        yield Case("gather", [g.array((11, 4), dt), g.array((2, 5), I64, 0, 10)], {"axis": 0}, tag="embedding lookup")
    yield Case("gather", [g.array((3, 6, 2), F32), g.array((4,), I32, -6, 5)], {"axis": 1}, tag="negative indices")
    yield Case("gather", [g.array((7, 3), F32), g.array((2, 6), I64, 0, 6)], {"axis": 0},
               symbolic={1: {0: "batch", 1: "seq"}}, tag="symbolic ids")
    for dt in (F32, I64, BOOL):
        yield Case("pad", [g.array((2, 3), dt)], {"pads": [[0, 1], [2, 0]], "value": 0.0})
    yield Case("pad", [g.array((2, 3), F32)], {"pads": [[1, 1], [0, 3]], "value": -1.5})
    starts = lambda *s: [np.array(v, I64) for v in s]
    for dt in (F32, I64, BF16):
        yield Case("dynamic_slice", [g.array((5, 6), dt), *starts(1, 2)], {"sizes": [2, 3]})
    yield Case("dynamic_slice", [g.array((5, 6), F32), *starts(4, -3)], {"sizes": [3, 2]}, tag="edge: clamped starts")
    yield Case("dynamic_slice", [g.array((5, 6), F32), np.array(1, I32), np.array(0, I32)], {"sizes": [2, 6]}, tag="i32 starts")
    for dt in (F32, I64, BF16):
        yield Case("dynamic_update_slice", [g.array((2, 3, 8, 4), dt), g.array((2, 3, 1, 4), dt), *starts(0, 0, 5, 0)],
                   tag="KV cache write")
    yield Case("dynamic_update_slice", [g.array((4, 5), F32), g.array((2, 3), F32), *starts(3, 4)], tag="edge: clamped")


def _linalg(g: _Gen) -> Iterator[Case]:
    for dt in FLOATS:
        yield Case("matmul", [g.array((3, 5), dt), g.array((5, 4), dt)])
        yield Case("matmul", [g.array((2, 3, 4, 5), dt), g.array((2, 3, 5, 6), dt)], tag="batched attention")
    yield Case("matmul", [g.array((2, 6, 5), F32), g.array((5, 3), F32)], symbolic={0: {0: "batch", 1: "seq"}},
               tag="projection, symbolic")
    yield Case("matmul", [g.array((2, 1, 4, 5), F32), g.array((3, 5, 2), F32)], tag="broadcast batch dims")
    yield Case("matmul", [g.array((3, 4), I64, -3, 3), g.array((4, 2), I64, -3, 3)], tag="integer")
    for dt in FLOATS:
        yield Case("conv", [g.array((2, 4, 9), dt), g.array((6, 4, 3), dt)],
                   {"stride": [1], "padding": [[1, 1]], "dilation": [1], "groups": 1}, tag="1d")
    yield Case("conv", [g.array((1, 4, 20), F32), g.array((4, 2, 5), F32)],
               {"stride": [2], "padding": [[2, 1]], "dilation": [2], "groups": 2}, tag="1d grouped, strided, dilated, asymmetric pad")
    yield Case("conv", [g.array((2, 3, 8, 8), F32), g.array((5, 3, 4, 4), F32)],
               {"stride": [4, 4], "padding": [[0, 0], [0, 0]], "dilation": [1, 1], "groups": 1}, tag="2d patch embedding")
    yield Case("conv", [g.array((1, 4, 7, 6), F32), g.array((4, 1, 3, 3), F32)],
               {"stride": [1, 2], "padding": [[1, 1], [0, 2]], "dilation": [1, 1], "groups": 4}, tag="2d depthwise")
    yield Case("conv", [g.array((1, 4, 3, 4, 5), F32), g.array((2, 2, 2, 2, 3), F32)],
               {"stride": [1, 2, 1], "padding": [[0, 0], [1, 0], [1, 1]], "dilation": [1, 1, 2], "groups": 2},
               tag="3d grouped")
    yield Case("conv", [g.array((2, 2, 11), F32), g.array((3, 2, 3), F32)],
               {"stride": [2], "padding": [[0, 0]], "dilation": [1], "groups": 1}, symbolic={0: {0: "batch", 2: "time"}},
               tag="1d symbolic length")


def _composites(g: _Gen) -> Iterator[Case]:
    for dt in FLOATS:  # inference programs: the identity (training programs are tested per backend)
        yield Case("dropout", [g.array(g.shape(3), dt)], {"rate": 0.3})
    for op in ("softmax", "log_softmax"):
        for dt in FLOATS:
            yield Case(op, [g.array(g.shape(3), dt, -6, 6)], {"axis": -1})
        yield Case(op, [g.array((3, 4, 5), F32)], {"axis": 1})
        edge = np.array([[0.0, -np.inf, 1.0, -np.inf], [-1e9, 0.0, -1e9, 2.0], [-3.4e38, 0.0, 1.0, -3.4e38]], F32)
        yield Case(op, [edge], {"axis": -1}, tag="edge: -inf masks and large negatives")
    for dt in FLOATS:
        x = g.array((2, 5, 8), dt)
        yield Case("layer_norm", [x, g.array((8,), dt), g.array((8,), dt)], {"eps": 1e-12})
        yield Case("rms_norm", [x, g.array((8,), dt)], {"eps": 1e-6})
    yield Case("layer_norm", [g.array((2, 7, 8), F32, 10, 11), None, g.array((8,), F32)], {"eps": 1e-5},
               symbolic={0: {0: "batch", 1: "seq"}}, tag="no weight, large mean")
    yield Case("layer_norm", [g.array((3, 8), F32)], {"eps": 1e-5}, tag="no affine")
    yield Case("rms_norm", [g.array((3, 8), F32)], {"eps": 1e-5}, tag="no weight")
    for op in ("gelu", "sigmoid", "silu"):
        for dt in FLOATS:
            yield Case(op, [g.array(g.shape(3), dt, -6, 6)], {"approximate": "none"} if op == "gelu" else {})
    yield Case("gelu", [g.array((4, 9), F32, -6, 6)], {"approximate": "tanh"})
    yield Case("sigmoid", [np.array([-100.0, -20.0, 0.0, 20.0, 100.0], F32)], tag="edge: saturation")
    for dt in FLOATS:
        q, k, v = (g.array((2, 4, 5, 8), dt, -1, 1) for _ in range(3))
        yield Case("attention", [q, k, v], {"causal": False})
        yield Case("attention", [q, k, v, g.array((2, 1, 1, 5), BOOL)], {"causal": True}, tag="padding mask + causal")
    q, kv = g.array((2, 6, 3, 4), F32), g.array((2, 2, 7, 4), F32)
    yield Case("attention", [q, kv, g.array((2, 2, 7, 5), F32)], {"scale": 0.3}, tag="grouped-query, Sq != Sk, Dv != D")
    mask = np.ones((2, 1, 1, 6), bool)
    mask[1, ..., 3:] = False
    yield Case("attention", [g.array((2, 2, 6, 4), F32), g.array((2, 2, 6, 4), F32), g.array((2, 2, 6, 4), F32), mask],
               symbolic={i: {0: "batch", 2: "seq"} for i in range(3)} | {3: {0: "batch", 3: "seq"}}, tag="symbolic + padding")
    add = np.where(g.array((2, 1, 5, 5), BOOL), 0.0, -np.inf).astype(F32)
    add[..., 0] = 0.0
    yield Case("attention", [g.array((2, 3, 5, 4), F32), g.array((2, 3, 5, 4), F32), g.array((2, 3, 5, 4), F32), add],
               tag="additive -inf mask")
    full = np.ones((1, 1, 4, 4), bool)
    full[0, 0, 1] = False
    yield Case("attention", [g.array((1, 2, 4, 4), F32), g.array((1, 2, 4, 4), F32), g.array((1, 2, 4, 4), F32), full],
               tag="edge: a fully masked row averages")
    yield Case("attention", [g.array((1, 2, 3, 4), F32), g.array((1, 2, 6, 4), F32), g.array((1, 2, 6, 4), F32),
                             g.array((1, 1, 3, 6), BOOL)], {"causal": True}, tag="causal with Sq < Sk (top-left)")
