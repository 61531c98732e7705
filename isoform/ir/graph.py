"""Graph, Node and Value: the IR data structures, their validation, printing and JSON form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import GraphError
from . import dims as D
from .dtypes import as_dtype
from .registry import TensorType, encode_attr, get_op

FORMAT = "isoform.graph"
VERSION = 1


#: A logical partitioning: per dim, the logical mesh axis it is split over (``"model"``: tensor
#: parallel, ``"data"``: data parallel) or None (not split). Backends with a device mesh lower it
#: (`isoform.backends.jax`); the others ignore it.
Sharding = tuple[str | None, ...]


@dataclass(frozen=True)
class Value:
    """A named tensor in a graph: a graph input, a parameter, or a node output. Inputs and
    parameters may carry a `Sharding` (None: replicated, and batch dims over ``"data"``)."""

    name: str
    type: TensorType
    sharding: Sharding | None = None

    @property
    def shape(self) -> D.Shape:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype


@dataclass(frozen=True)
class Node:
    """One op application: ``outputs = op(inputs, **attrs)``. A missing optional input is None."""

    op: str
    inputs: tuple[str | None, ...]
    attrs: Mapping[str, Any]
    outputs: tuple[Value, ...]


class Graph:
    """An immutable, validated IR graph: inputs with symbolic dims, parameters, topologically ordered
    nodes, named outputs, and free-form metadata (architecture, task, ...)."""

    def __init__(self, name: str, inputs: list[Value], params: list[Value], nodes: list[Node],
                 outputs: Mapping[str, str], metadata: Mapping[str, Any] | None = None):
        self.name = name
        self.inputs = tuple(inputs)
        self.params = tuple(params)
        self.nodes = tuple(nodes)
        self.outputs = dict(outputs)
        self.metadata = dict(metadata or {})
        self.values: dict[str, Value] = {}
        self._validate()

    # -- validation -------------------------------------------------------------------------------
    def _define(self, value: Value, where: str) -> None:
        if value.name in self.values:
            raise GraphError(f"{where}: value {value.name!r} is defined twice")
        self.values[value.name] = value

    def _validate(self) -> None:
        for v in self.inputs:
            for d in v.shape:
                if isinstance(d, str) and not d.isidentifier():
                    raise GraphError(f"input {v.name!r}: dims of graph inputs must be ints or plain names, got {d!r}")
            _check_sharding(v, f"input {v.name!r}")
            self._define(v, f"input {v.name!r}")
        for v in self.params:
            if any(not isinstance(d, int) for d in v.shape):
                raise GraphError(f"parameter {v.name!r}: parameter shapes must be concrete, got {D.fmt(v.shape)}")
            _check_sharding(v, f"parameter {v.name!r}")
            self._define(v, f"parameter {v.name!r}")
        symbols = {d for v in self.inputs for d in v.shape if isinstance(d, str)}
        for i, node in enumerate(self.nodes):
            where = self.node_label(i)
            op = get_op(node.op)
            op.check_arity(len(node.inputs), where)
            args = []
            for name in node.inputs:
                if name is not None and name not in self.values:
                    raise GraphError(f"{where}: input {name!r} is not defined before this node")
                args.append(None if name is None else self.values[name].type)
            attrs = op.normalize_attrs(node.attrs, where)
            if attrs != dict(node.attrs):
                raise GraphError(f"{where}: attributes {dict(node.attrs)} are not normalized (expected {attrs})")
            for key, spec in op.attrs.items():
                if spec.kind == "dims":
                    unknown = set().union(*(D.names(d) for d in attrs[key])) - symbols
                    if unknown:
                        raise GraphError(f"{where}: attribute {key} uses {sorted(unknown)}, not a dim of any graph input")
            try:
                types = op.infer(*args, **attrs)
            except GraphError as e:
                raise GraphError(f"{where}: {e}") from None
            if len(types) != len(node.outputs):
                raise GraphError(f"{where}: {node.op} has {len(types)} outputs, node lists {len(node.outputs)}")
            for out, t in zip(node.outputs, types, strict=True):
                if out.type != t:
                    raise GraphError(f"{where}: output {out.name!r} is recorded as {out.type}, inferred {t}")
                self._define(out, where)
        for key, name in self.outputs.items():
            if name not in self.values:
                raise GraphError(f"graph output {key!r} refers to undefined value {name!r}")

    def node_label(self, index: int) -> str:
        """How errors name a node: its line in the printed graph and its text."""
        node = self.nodes[index]
        outs = ", ".join(f"%{o.name}" for o in node.outputs)
        return f"node {index} ({outs} = {node.op}(...))"

    # -- printing ---------------------------------------------------------------------------------
    def _ref(self, name: str | None) -> str:
        if name is None:
            return "None"
        return f"p:{name}" if name in self._param_names else f"%{name}"

    @property
    def _param_names(self) -> set[str]:
        return {p.name for p in self.params}

    def __str__(self) -> str:
        sig = ", ".join(f"%{v.name}: {v.type}{_fmt_sharding(v)}" for v in self.inputs)
        lines = [f"graph {self.name}({sig}) {{"]
        for p in self.params:
            lines.append(f"  param p:{p.name}: {p.type}{_fmt_sharding(p)}")
        for node in self.nodes:
            outs = ", ".join(f"%{o.name}" for o in node.outputs)
            args = [self._ref(n) for n in node.inputs]
            args += [f"{k}={_fmt_attr(v)}" for k, v in node.attrs.items()]
            types = ", ".join(str(o.type) for o in node.outputs)
            lines.append(f"  {outs} = {node.op}({', '.join(args)}) : {types}")
        rets = ", ".join(f"{k}: {self._ref(v)}" for k, v in self.outputs.items())
        lines.append(f"  return {{{rets}}}")
        lines.append("}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.params)} params, {len(self.nodes)} nodes>"

    # -- JSON -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "name": self.name,
            "inputs": [_value_dict(v) for v in self.inputs],
            "params": [_value_dict(v) for v in self.params],
            "nodes": [{"op": n.op, "inputs": list(n.inputs),
                       "attrs": {k: encode_attr(v) for k, v in n.attrs.items()},
                       "outputs": [_value_dict(o) for o in n.outputs]} for n in self.nodes],
            "outputs": dict(self.outputs),
            "metadata": self.metadata,
        }

    def to_json(self, indent: int | None = None) -> str:
        """The graph as JSON text; `Graph.from_json` reads it back to an equal graph."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Graph:
        """Parse and validate a graph written by `to_json`. Malformed input raises GraphError."""
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, RecursionError) as e:
            raise GraphError(f"graph JSON is not valid JSON: {type(e).__name__}: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Graph:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise GraphError(f"not an isoform graph: expected an object with format={FORMAT!r}")
        if data.get("version") != VERSION:
            raise GraphError(f"unsupported graph version {data.get('version')!r} (this isoform reads {VERSION})")
        try:
            nodes = []
            for i, n in enumerate(_get(data, "nodes", list)):
                where = f"node {i}"
                op = get_op(_get(n, "op", str, where))
                inputs = tuple(_get(n, "inputs", list, where))
                if any(x is not None and not isinstance(x, str) for x in inputs):
                    raise GraphError(f"{where}: inputs must be value names or null")
                attrs = op.normalize_attrs(_get(n, "attrs", dict, where), f"{where} ({op.name})")
                outs = tuple(_value(o, where) for o in _get(n, "outputs", list, where))
                nodes.append(Node(op.name, inputs, attrs, outs))
            outputs = _get(data, "outputs", dict)
            if any(not isinstance(v, str) for v in outputs.values()):
                raise GraphError("graph outputs must map names to value names")
            return cls(_get(data, "name", str),
                       [_value(v, "graph inputs", sharded=True) for v in _get(data, "inputs", list)],
                       [_value(v, "graph params", sharded=True) for v in _get(data, "params", list)],
                       nodes, outputs, _get(data, "metadata", dict))
        except (KeyError, TypeError, AttributeError) as e:
            raise GraphError(f"malformed graph JSON: {e!r}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def fingerprint(self) -> str:
        """A stable hash of the graph's structure (used as a compile-cache key)."""
        import hashlib

        if not hasattr(self, "_fingerprint"):
            self._fingerprint = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
        return self._fingerprint

    @property
    def symbols(self) -> list[str]:
        """Names of the symbolic dims of the graph inputs, in order of first appearance."""
        seen: dict[str, None] = {}
        for v in self.inputs:
            for d in v.shape:
                if isinstance(d, str):
                    seen.setdefault(d)
        return list(seen)


def _fmt_attr(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt_attr(x) for x in v) + "]"
    return str(v)


def _value_dict(v: Value) -> dict[str, Any]:
    d = {"name": v.name, "shape": list(v.shape), "dtype": v.type.dtype.value}
    return d if v.sharding is None else {**d, "sharding": list(v.sharding)}


def _check_sharding(v: Value, where: str) -> None:
    s = v.sharding
    if s is None:
        return
    if not isinstance(s, tuple) or len(s) != len(v.shape):
        raise GraphError(f"{where}: sharding {s!r} must have one entry per dim of {D.fmt(v.shape)}")
    axes = [a for a in s if a is not None]
    if any(not isinstance(a, str) or not a.isidentifier() for a in axes) or len(set(axes)) != len(axes):
        raise GraphError(f"{where}: sharding {s!r} must hold distinct logical axis names (such as 'model') or None")


def _fmt_sharding(v: Value) -> str:
    return "" if v.sharding is None else " sharded[" + ", ".join(a or "_" for a in v.sharding) + "]"


def _get(obj: Any, key: str, kind: type, where: str = "graph") -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise GraphError(f"malformed graph JSON: {where} has no {key!r}")
    if not isinstance(obj[key], kind):
        raise GraphError(f"malformed graph JSON: {where}.{key} must be a {kind.__name__}")
    return obj[key]


def _value(v: Any, where: str, sharded: bool = False) -> Value:
    name = _get(v, "name", str, where)
    shape = tuple(D.canonical(d) for d in _get(v, "shape", list, f"{where} value {name!r}"))
    sharding = tuple(_get(v, "sharding", list, f"{where} value {name!r}")) if sharded and "sharding" in v else None
    return Value(name, TensorType(shape, as_dtype(_get(v, "dtype", str, f"{where} value {name!r}"))), sharding)


def _refuse_constant(name: str) -> Any:
    raise GraphError(f"graph JSON holds {name}, which to_json never writes (numbers must be finite)")
