"""The context ONNX lowerings (`onnx_ops.py`) emit into: `Ctx` collects the nodes and initializers of
one export and hands out fresh names, shared constants and run-time sizes; `V` is a value as a
lowering sees it; `Scalar` is a run-time int64 size whose arithmetic emits nodes. A symbolic dim is
computed from the input shapes when first used: `Shape` of the input that defines the name, then
`Add`/`Sub`/`Mul`/`Div` for expressions such as ``batch*seq``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ir import Graph
from ..ir import dims as D
from ..ir.dtypes import DType

ONNX_TYPE = {DType.f32: TensorProto.FLOAT, DType.f16: TensorProto.FLOAT16, DType.bf16: TensorProto.BFLOAT16,
             DType.i32: TensorProto.INT32, DType.i64: TensorProto.INT64, DType.bool: TensorProto.BOOL}


@dataclass(frozen=True)
class V:
    """An ONNX value seen by a lowering: its name and the IR dtype and shape it carries."""

    name: str
    dtype: DType
    shape: D.Shape

    @property
    def rank(self) -> int:
        return len(self.shape)


class Scalar:
    """A run-time int64 size, shape [1]; arithmetic with ints or other Scalars emits ONNX nodes.
    `expr` is the symbolic dim it stands for, if any."""

    def __init__(self, ctx: Ctx, name: str | None, expr: str = ""):
        self.ctx, self._name, self.expr = ctx, name, expr

    @property
    def name(self) -> str:
        """The ONNX value; a symbolic dim's nodes are emitted on first use (Reshape/Expand may not need them)."""
        if self._name is None:
            value = D.evaluate(self.expr, _LazySizes(self.ctx))
            self._name = value.name if isinstance(value, Scalar) else self.ctx.ivec(value)
        return self._name

    def _bin(self, op: str, other: int | Scalar, swap: bool = False) -> Scalar:
        a, b = (other, self) if swap else (self, other)
        return Scalar(self.ctx, self.ctx.op(op, self.ctx.ivec(a), self.ctx.ivec(b)))

    __add__ = lambda self, o: self if o == 0 else self._bin("Add", o)
    __radd__ = __add__
    __sub__ = lambda self, o: self if o == 0 else self._bin("Sub", o)
    __rsub__ = lambda self, o: self._bin("Sub", o, swap=True)
    __mul__ = lambda self, o: self if o == 1 else self._bin("Mul", o)
    __rmul__ = __mul__
    __floordiv__ = lambda self, o: self if o == 1 else self._bin("Div", o)
    __rfloordiv__ = lambda self, o: self._bin("Div", o, swap=True)
    __neg__ = lambda self: Scalar(self.ctx, self.ctx.op("Neg", self.name))


class Ctx:
    """Collects the nodes and initializers of one export; gives lowerings fresh names, constants,
    and run-time sizes of symbolic dims."""

    def __init__(self, graph: Graph):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._taken = {v.name for v in (*graph.inputs, *graph.params)} | set(graph.outputs)
        self._count = 0
        self._consts: dict[tuple, str] = {}
        self._sources = {d: (v.name, i) for v in reversed(graph.inputs) for i, d in enumerate(v.shape)
                         if isinstance(d, str)}
        self._dims: dict[str, Scalar] = {}
        self._symbols: dict[str, Scalar] = {}
        self.memo: dict[tuple, str] = {}  # values lowerings share between nodes (e.g. attention masks)

    def fresh(self, hint: str = "t") -> str:
        while True:
            self._count += 1
            name = f"{hint}{self._count}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def op(self, op_type: str, *inputs: V | str | None, outputs: int = 1, **attrs: Any) -> Any:
        """Append a node; returns its output name (a list of names if `outputs` > 1)."""
        names = [self.fresh() for _ in range(outputs)]
        args = ["" if i is None else i.name if isinstance(i, V) else i for i in inputs]
        while args and not args[-1]:
            args.pop()
        self.nodes.append(helper.make_node(op_type, args, names, **attrs))
        return names[0] if outputs == 1 else names

    def const(self, value: Any, dtype: Any = np.int64) -> str:
        """An initializer holding `value` (shared between identical constants)."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = name = self.fresh("c")
            self.initializers.append(numpy_helper.from_array(arr, name))
        return self._consts[key]

    # -- run-time sizes ---------------------------------------------------------------------------
    def dim(self, d: D.Dim) -> int | Scalar:
        """The size `d` as an int, or as a Scalar computed from the shapes of the graph inputs."""
        if isinstance(d, int):
            return d
        if d not in self._dims:
            self._dims[d] = Scalar(self, None, d)
        return self._dims[d]

    def symbol(self, name: str) -> Scalar:
        """The size of a graph input's symbolic dim (one `Shape` node, emitted once)."""
        if name not in self._symbols:
            source, axis = self._sources[name]
            self._symbols[name] = Scalar(self, self.op("Shape", source, start=axis, end=axis + 1), name)
        return self._symbols[name]

    def ivec(self, items: Any) -> str:
        """An int64 vector of ints and Scalars (consecutive ints share one constant)."""
        items = items if isinstance(items, list | tuple) else [items]
        parts: list[str] = []
        run: list[int] = []
        for x in items:
            if isinstance(x, Scalar):
                if run:
                    parts.append(self.const(run))
                    run = []
                parts.append(x.name)
            else:
                run.append(int(x))
        if run or not parts:
            parts.append(self.const(run))
        return parts[0] if len(parts) == 1 else self.op("Concat", *parts, axis=0)

    def clamp(self, x: int | Scalar, lo: int, hi: int | Scalar) -> int | Scalar:
        if not isinstance(x, Scalar) and not isinstance(hi, Scalar):
            return min(max(x, lo), hi)
        return Scalar(self, self.op("Min", self.op("Max", self.ivec(x), self.const([lo])), self.ivec(hi)))

    def index(self, x: V) -> Scalar:
        """A 0-d integer tensor (a start index) as an int64 Scalar."""
        i = x.name if x.dtype == DType.i64 else self.op("Cast", x, to=TensorProto.INT64)
        return Scalar(self, self.op("Reshape", i, self.const([1])))

    def cast(self, x: V, dtype: DType) -> V:
        return x if x.dtype == dtype else V(self.op("Cast", x, to=ONNX_TYPE[dtype]), dtype, x.shape)


class _LazySizes(Mapping):
    """The symbol -> Scalar environment for dims.evaluate, emitting each `Shape` only when used."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx

    def __getitem__(self, name: str) -> Scalar:
        return self.ctx.symbol(name)

    def __contains__(self, name: object) -> bool:
        return name in self.ctx._sources

    def __iter__(self):
        return iter(self.ctx._sources)

    def __len__(self) -> int:
        return len(self.ctx._sources)

