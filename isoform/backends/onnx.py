"""Export an IR graph to ONNX (only the `onnx` package is needed).

    model = to_model(graph, params)                       # an onnx.ModelProto, not written anywhere
    export_onnx(graph, params, "model.onnx", opset=23)    # checked with the full checker, then written

Every primitive op has a lowering to standard ONNX operators (opset >= 18). Composites are lowered
natively where ONNX has an operator for them at the chosen opset (`Softmax`, `LogSoftmax`,
`LayerNormalization`, `Sigmoid`; `Gelu` from opset 20; `Attention` and `RMSNormalization` from 23),
otherwise exported as their decomposition. Symbolic dims become named dynamic axes of the inputs
and outputs; inside the graph they are computed at run time from the input shapes (`Shape` of the
input that defines the name, then `Add`/`Sub`/`Mul`/`Div` for expressions such as ``batch*seq``).

Numerics follow the NumPy references: float ops on f16/bf16 values run in f32 between two `Cast`s
(as the references compute, and because ONNX Runtime's CPU kernels lack most bf16 types); pure data
movement (reshape, transpose, slicing, concat, gather, where, ...) stays in the value's own dtype.
Masked attention scores use the dtype's lowest finite value, so fully masked rows average; causal
masking is folded into that additive mask. `cast` float->int relies on ONNX `Cast`, which truncates
in ONNX Runtime (checked by the conformance suite).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import BackendError
from ..ir import Graph, decompose, get_op
from ..ir import dims as D
from ..ir.dtypes import DType

MIN_OPSET = 18
#: Composites whose native ONNX operator needs a newer opset than MIN_OPSET (else: decomposition).
OPSET_NEEDED = {"gelu": 20, "attention": 23, "rms_norm": 23}
#: Models with more initializer bytes than this are written with external data (protobuf's 2 GB limit).
EXTERNAL_DATA_BYTES = 1 << 30
ONNX_TYPE = {DType.f32: TensorProto.FLOAT, DType.f16: TensorProto.FLOAT16, DType.bf16: TensorProto.BFLOAT16,
             DType.i32: TensorProto.INT32, DType.i64: TensorProto.INT64, DType.bool: TensorProto.BOOL}
#: Ops that only move or select data: exact in any dtype, so f16/bf16 values stay as they are.
DATA_MOVEMENT = {"reshape", "transpose", "broadcast_to", "slice", "concat", "gather", "pad", "where",
                 "dynamic_slice", "dynamic_update_slice", "cast", "constant", "iota"}
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


# -- the model ------------------------------------------------------------------------------------
def default_opset() -> int:
    """The newest opset both `onnx` and (if installed) ONNX Runtime's CPU kernels support."""
    import importlib.util

    newest = onnx.defs.onnx_opset_version()
    if importlib.util.find_spec("onnxruntime") is None:
        return newest
    from .onnxruntime import supported_opset

    return min(newest, supported_opset())


def _check_opset(opset: int) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise BackendError(f"cannot export to ONNX opset {opset}: isoform exports opsets {MIN_OPSET}..{newest} "
                           f"(the installed onnx {onnx.__version__} knows up to {newest})")


def to_model(graph: Graph, params: Mapping[str, np.ndarray], *, opset: int | None = None,
             metadata: Mapping[str, Any] | None = None, f32_io_for_bf16: bool = False) -> onnx.ModelProto:
    """`graph` as an ONNX model with `params` as initializers. Raises BackendError naming any op that
    has no ONNX lowering. `f32_io_for_bf16` declares bf16 inputs/outputs as f32 (cast inside), for
    runtimes whose Python API cannot pass bf16 arrays."""
    opset = default_opset() if opset is None else opset
    _check_opset(opset)
    graph = decompose(graph, lambda op: lowerable(op, opset))
    missing = sorted({n.op for n in graph.nodes if n.op not in LOWERINGS})
    if missing:
        first = next(i for i, n in enumerate(graph.nodes) if n.op in missing)
        raise BackendError(f"cannot export graph {graph.name!r} to ONNX: no ONNX lowering for op(s) {missing} "
                           f"(first at {graph.node_label(first)})")
    io_type = {dt: ONNX_TYPE[DType.f32 if f32_io_for_bf16 and dt == DType.bf16 else dt] for dt in DType}
    ctx = Ctx(graph)
    values: dict[str, V] = {}
    for v in graph.inputs:
        name = v.name if io_type[v.dtype] == ONNX_TYPE[v.dtype] else ctx.op("Cast", v.name, to=ONNX_TYPE[v.dtype])
        values[v.name] = V(name, v.dtype, v.shape)
    used = {n for node in graph.nodes for n in node.inputs} | set(graph.outputs.values())
    for p in graph.params:
        if p.name in used:
            arr = np.asarray(params[p.name]).astype(p.dtype.numpy, copy=False)
            if arr.shape != tuple(p.shape):
                raise BackendError(f"parameter {p.name!r} has shape {arr.shape}, graph declares {D.fmt(p.shape)}")
            ctx.initializers.append(numpy_helper.from_array(arr, p.name))
            values[p.name] = V(p.name, p.dtype, p.shape)
    for node in graph.nodes:
        _emit(ctx, node, values)
    outputs = []
    for key, ref in graph.outputs.items():
        v = values[ref]
        ctx.nodes.append(helper.make_node("Identity", [v.name], [key]) if io_type[v.dtype] == ONNX_TYPE[v.dtype]
                         else helper.make_node("Cast", [v.name], [key], to=io_type[v.dtype]))
        outputs.append(_info(key, v.dtype, v.shape, io_type))
    inputs = [_info(v.name, v.dtype, v.shape, io_type) for v in graph.inputs]
    body = helper.make_graph(ctx.nodes, graph.name, inputs, outputs, ctx.initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(body, opset_imports=opsets, producer_name="isoform", producer_version=_version(),
                              ir_version=helper.find_min_ir_version_for(opsets))
    meta = {**graph.metadata, "isoform_version": _version(), "inputs": [v.name for v in graph.inputs],
            "outputs": list(graph.outputs), **(metadata or {})}
    helper.set_model_props(model, {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in meta.items()})
    return model


def _info(name: str, dtype: DType, shape: D.Shape, io_type: Mapping[DType, int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, io_type[dtype], [d if isinstance(d, int) else str(d) for d in shape])


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("isoform")
    except PackageNotFoundError:
        return "unknown"


def _emit(ctx: Ctx, node: Any, values: dict[str, V]) -> None:
    """Lower one node. Float ops on f16/bf16 values run in f32 between Casts (like the references)."""
    args = [None if n is None else values[n] for n in node.inputs]
    half = next((t.dtype for t in [*args, *node.outputs] if t is not None and t.dtype in (DType.f16, DType.bf16)), None)
    upcast = half is not None and node.op not in DATA_MOVEMENT
    if upcast:
        args = [None if a is None else ctx.cast(a, DType.f32) if a.dtype == half else a for a in args]
    opdef = get_op(node.op)
    attrs = {k: [ctx.dim(d) for d in v] if opdef.attrs[k].kind == "dims" else v for k, v in node.attrs.items()}
    out = LOWERINGS[node.op](ctx, *args, **attrs)
    for o, name in zip(node.outputs, (out,) if isinstance(out, str) else out, strict=True):
        v = V(name, o.dtype, o.shape)
        values[o.name] = ctx.cast(V(name, DType.f32, o.shape), o.dtype) if upcast and o.dtype == half else v


# -- writing files --------------------------------------------------------------------------------
def export_onnx(graph: Graph, params: Mapping[str, np.ndarray], path: str | os.PathLike, *, opset: int | None = None,
                metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `graph` with `params` to the ONNX file `path` and return it. The model passes
    `onnx.checker.check_model(full_check=True)` before it is written; models over 1 GB of weights get
    their initializers in ``<name>.data`` next to it. Nothing is left behind if the export fails."""
    path = Path(path)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as e:
        raise BackendError(f"cannot write ONNX model to {str(path)!r}: {e.strerror or e}") from None
    try:
        model = to_model(graph, params, opset=opset, metadata=metadata)
        nbytes = sum(p.nbytes for p in map(np.asarray, params.values()))
        tmp = staging / path.name
        if nbytes > EXTERNAL_DATA_BYTES:
            onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=f"{path.name}.data", size_threshold=1024)
            onnx.checker.check_model(str(tmp), full_check=True)
        else:
            onnx.checker.check_model(model, full_check=True)
            onnx.save_model(model, tmp)
        for f in sorted(staging.iterdir(), key=lambda f: f == tmp):  # the .onnx file last
            os.replace(f, path.parent / f.name)
    except OSError as e:
        raise BackendError(f"cannot write ONNX model to {str(path)!r}: {e.strerror or e}") from None
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise BackendError(f"exported ONNX model for graph {graph.name!r} fails the ONNX checker: {e}") from None
    finally:
        for f in staging.iterdir():
            f.unlink()
        staging.rmdir()
    return path


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
