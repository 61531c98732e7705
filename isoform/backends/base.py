"""The backend contract: a Backend registers lowerings for ops, compiles a Graph into a Program,
and converts parameters to and from its framework's native tensors.

Shared machinery lives here so each backend module is only its lowerings: graph preparation
(decomposing composites the backend does not lower, rejecting unsupported primitives at compile
time), input checking and binding of symbolic dims, and code generation of a straight-line Python
function from the node list (as torch.fx does), which backends trace (JAX, TF) or run (torch, NumPy).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendError, InputError
from ..ir import Graph, Value, decompose, dims, get_op
from ..ir.dtypes import DType
from ..ir.registry import in_f32

Lowering = Callable[..., Any]


#: Composites a backend lowers only in programs compiled for training: elsewhere they are their
#: decomposition (dropout: the identity), so inference graphs hold no trace of them.
TRAINING_ONLY = frozenset({"dropout"})


class Backend:
    """Base class of backends. Subclasses set `name`, `framework` (the module whose presence makes
    the backend available) and `extra` (the pip extra that installs it), register lowerings with
    `@backend.lower("op")`, and implement `compile`, `to_native` and `to_numpy`."""

    name: str = ""
    framework: str = ""
    extra: str = ""
    static_shapes: bool = False  # compiles once per concrete input shape (callers bucket lengths)
    device: Any = None  # where `to_native` puts parameters (programs run there); None: the framework's default

    def __init__(self) -> None:
        self.lowerings: dict[str, Lowering] = {}

    def on(self, device: Any) -> Backend:
        """This backend placing parameters, and so running programs, on ``device`` (None: the default);
        BackendError naming the device if the backend has no such device or it is not available here.
        Backends that run on the CPU only (this default) take None and ``"cpu"``."""
        if device is None or str(device) == "cpu":
            return self
        raise BackendError(f"backend {self.name!r} runs on the CPU only: device={device!r} is not supported "
                           "(pass device=None or 'cpu')")

    def lower(self, *ops: str) -> Callable[[Lowering], Lowering]:
        """Decorator registering one function as the lowering of the given ops."""

        def register(f: Lowering) -> Lowering:
            for op in ops:
                get_op(op)
                self.lowerings[op] = f
            return f

        return register

    def supports(self, op: str) -> bool:
        return op in self.lowerings

    def prepare(self, graph: Graph, training: bool = False) -> Graph:
        """Decompose composites this backend does not lower, and the `TRAINING_ONLY` ones (dropout:
        identity) unless the program is for ``training``; reject unsupported primitives."""
        graph = decompose(graph, lambda op: self.supports(op) and (training or op not in TRAINING_ONLY))
        missing = sorted({n.op for n in graph.nodes if n.op not in self.lowerings})
        if missing:
            first = next(i for i, n in enumerate(graph.nodes) if n.op in missing)
            raise BackendError(f"backend {self.name!r} has no lowering for op(s) {missing} and they have no "
                               f"decomposition (first at {graph.node_label(first)} of graph {graph.name!r})")
        return graph

    # -- to implement ------------------------------------------------------------------------------
    def compile(self, graph: Graph, params: Mapping[str, Any]) -> Program:
        raise NotImplementedError

    def to_native(self, array: np.ndarray, dtype: DType) -> Any:
        """A framework array (for parameters: a trainable one) holding `array` cast to `dtype`."""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> np.ndarray:
        raise NotImplementedError

    def param_to_native(self, param: Value, array: Any) -> Any:
        """The native array of graph parameter ``param`` holding ``array``: `to_native` in its dtype;
        backends over a device mesh override it to lay the parameter out by its sharding."""
        return self.to_native(array, param.dtype)

    def __repr__(self) -> str:
        return f"<isoform backend {self.name!r}>"


class Program:
    """A graph compiled for one backend, holding its parameters as native tensors.

    `program(**inputs)` returns a dict of native outputs; `program.params` is the native parameter
    container (`nn.Module`, pytree dict, `tf.Module`), usable with the framework's own training tools."""

    def __init__(self, backend: Backend, graph: Graph):
        self.backend = backend
        self.graph = graph

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        raise NotImplementedError

    def numpy_params(self) -> dict[str, np.ndarray]:
        """Current parameter values as NumPy arrays (after training, say)."""
        raise NotImplementedError

    def native_params(self) -> Mapping[str, Any]:
        """Parameters by graph name as this backend's native tensors, so another graph can be
        compiled over the same weights without copying them (as the KV-cache decoders do)."""
        return self.params if isinstance(self.params, Mapping) else self.numpy_params()


#: The IR's half-precision dtypes: what `OpDef.half` is about.
HALF = (DType.f16, DType.bf16)


def half_dtype(op: str, dtypes: Iterable[Any], half: Collection[Any] = HALF) -> Any:
    """The dtype (one of `half`, a backend's f16 and bf16) that a node of `op` with inputs of `dtypes`
    computes in f32 under the op's `OpDef.half`, or None if it runs in its own dtypes. Every backend
    decides the half-precision rule here, from the op's declaration."""
    if get_op(op).half != "upcast":
        return None
    return next((d for d in dtypes if d in half), None)


@dataclass(frozen=True)
class Casts:
    """A backend's dtypes as the half-precision rule needs them: `dtype(ir_dtype)` its dtype for values
    of an IR dtype, `half` its f16 and bf16, `f32` its float32, `cast(x, dtype)` its cast."""

    dtype: Callable[[DType], Any]
    half: Collection[Any]
    f32: Any
    cast: Callable[[Any, Any], Any]

    def half_dtype(self, op: str, dtypes: Iterable[DType | None]) -> Any:
        """`half_dtype` for a node whose inputs have these IR dtypes."""
        return half_dtype(op, [None if d is None else self.dtype(d) for d in dtypes], self.half)

    def lowering(self, op: str, f: Lowering, dtypes: Iterable[DType | None]) -> Lowering:
        """`f` for a node of `op` with inputs of these IR dtypes: in f32 (`in_f32`) where `half_dtype`
        says so, else `f` itself, decided at compile time so f32 nodes pay nothing per call."""
        if self.half_dtype(op, dtypes) is None:
            return f
        return in_f32(f, half=self.half, f32=self.f32, cast=self.cast)


def check_params(backend: str, graph: Graph, params: Mapping[str, Any]) -> None:
    """BackendError listing every missing and mis-shaped parameter, before anything is converted."""
    missing = [p.name for p in graph.params if p.name not in params]
    wrong = [f"{p.name}: {tuple(np.shape(params[p.name]))} != {p.shape}" for p in graph.params
             if p.name in params and tuple(np.shape(params[p.name])) != p.shape]
    if missing or wrong:
        raise BackendError(f"cannot compile graph {graph.name!r} on {backend}: missing parameters {missing}, "
                           f"wrong shapes {wrong}")


def matmul_bias_pairs(graph: Graph, casts: Casts) -> list[tuple[int, int, int]]:
    """``(matmul node, add node, position of the bias in the add)`` for every ``matmul(x, w)`` (w 2-d)
    whose only use is an ``add`` of a 1-d bias over its last dim, as `layers.linear` writes
    ``x @ w + b``: what a backend may run as one GEMM with the bias fused; not where the matmul
    computes half values in f32 (`Casts.half_dtype`), as it rounds before the add."""
    uses = Counter(n for node in graph.nodes for n in node.inputs if n is not None)
    uses.update(graph.outputs.values())
    matmuls = {node.outputs[0].name: i for i, node in enumerate(graph.nodes) if node.op == "matmul"}
    pairs = []
    for j, node in enumerate(graph.nodes):
        for k, y in enumerate(node.inputs if node.op == "add" else ()):
            i = matmuls.get(y)
            if i is None or uses[y] != 1:
                continue
            x, w = (graph.values[n] for n in graph.nodes[i].inputs)
            bias = graph.values[node.inputs[1 - k]]
            linear = len(x.shape) >= 2 and len(w.shape) == 2 and tuple(bias.shape) == (w.shape[1],)
            if linear and bias.dtype == x.dtype and casts.half_dtype("matmul", [x.dtype, w.dtype]) is None:
                pairs.append((i, j, 1 - k))
                break
    return pairs


# -- inputs and symbolic dims -----------------------------------------------------------------------
_KIND = {"f": "float", "i": "int", "u": "int", "b": "bool", "V": "float"}


def check_inputs(graph: Graph, inputs: Mapping[str, Any], shape_of: Callable[[Any], tuple[int, ...]],
                 dtype_of: Callable[[Any], np.dtype]) -> dict[str, int]:
    """Check names, ranks, dtypes and dims of concrete inputs; return sizes of the symbolic dims.
    Raises InputError naming the input and dim at fault, before any compute."""
    expected = {v.name for v in graph.inputs}
    missing, unexpected = expected - set(inputs), set(inputs) - expected
    if missing or unexpected:
        raise InputError(f"graph {graph.name!r} takes inputs {sorted(expected)}; missing {sorted(missing)}, "
                         f"unexpected {sorted(unexpected)}")
    env: dict[str, int] = {}
    source: dict[str, str] = {}
    for v in graph.inputs:
        x = inputs[v.name]
        shape = tuple(int(d) for d in shape_of(x))
        if len(shape) != len(v.shape):
            raise InputError(f"input {v.name!r} must have rank {len(v.shape)} {dims.fmt(v.shape)}, got shape {shape}")
        kind = _KIND.get(np.dtype(dtype_of(x)).kind, "?")
        want = "float" if v.dtype.is_float else "int" if v.dtype.is_int else "bool"
        if kind != want:
            raise InputError(f"input {v.name!r} must be {v.dtype} ({want}), got {np.dtype(dtype_of(x))}")
        for i, (d, n) in enumerate(zip(v.shape, shape)):
            if isinstance(d, int):
                if d != n:
                    raise InputError(f"input {v.name!r} dim {i} must be {d}, got shape {shape}")
            elif d in env and env[d] != n:
                raise InputError(f"input {v.name!r} has shape {shape} but dim {d!r} is {env[d]} "
                                 f"(from input {source[d]!r}): shapes of {source[d]!r} and {v.name!r} must agree")
            else:
                env[d], source[d] = n, v.name
    return env


class InputChecker:
    """`check_inputs` for one graph, memoized per input signature (shapes and dtypes), so repeated
    calls with the same shapes cost a dict lookup."""

    def __init__(self, graph: Graph, shape_of: Callable[[Any], tuple[int, ...]], dtype_of: Callable[[Any], Any]):
        self.graph, self.shape_of, self.dtype_of = graph, shape_of, dtype_of
        self.names = tuple(v.name for v in graph.inputs)
        self._cache: dict[tuple, dict[str, int]] = {}

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, int]:
        key = None
        if len(inputs) == len(self.names):
            try:
                key = tuple((tuple(self.shape_of(inputs[n])), self.dtype_of(inputs[n])) for n in self.names)
            except KeyError:
                key = None
            if key in self._cache:
                return self._cache[key]
        env = check_inputs(self.graph, inputs, self.shape_of, self.dtype_of)
        if key is not None and len(self._cache) < 1024:
            self._cache[key] = env
        return env


def symbol_sizes(graph: Graph, inputs: Mapping[str, Any], shape_of: Callable[[Any, int], Any]) -> dict[str, Any]:
    """Sizes of symbolic dims read off (possibly traced) inputs; `shape_of(x, i)` gives dim i."""
    env: dict[str, Any] = {}
    for v in graph.inputs:
        for i, d in enumerate(v.shape):
            if isinstance(d, str) and d not in env:
                env[d] = shape_of(inputs[v.name], i)
    return env


# -- code generation ------------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _dim_code(d: dims.Dim) -> str:
    return str(d) if isinstance(d, int) else "(" + _NAME.sub(lambda m: f"E[{m.group(0)!r}]", d) + ")"


def generate(graph: Graph, lowerings: Mapping[str, Lowering], *, fn_name: str = "run", casts: Casts | None = None,
             overrides: Mapping[int, Lowering] | None = None) -> Callable[..., dict[str, Any]]:
    """A Python function ``run(P, I, E) -> outputs`` executing `graph` straight-line with `lowerings`:
    P maps parameter names to arrays, I input names to arrays, E symbolic dim names to sizes.
    Each node becomes one call; values are deleted after their last use. With `casts`, nodes follow
    the half-precision rule (`Casts.lowering`). `overrides` gives single nodes (by index) their own
    lowering, used as given, so a backend can fuse a pattern of nodes."""
    namespace: dict[str, Any] = {}
    ident = {}
    for i, v in enumerate(graph.inputs):
        ident[v.name] = f"i{i}"
    for i, v in enumerate(graph.params):
        ident[v.name] = f"p{i}"
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for n in node.inputs:
            if n is not None:
                last_use[n] = i
    keep = set(graph.outputs.values()) | {v.name for v in graph.inputs} | {v.name for v in graph.params}
    lines = [f"def {fn_name}(P, I, E):"]
    lines += [f"    {ident[v.name]} = I[{v.name!r}]" for v in graph.inputs]
    used_params = {n for node in graph.nodes for n in node.inputs} | set(graph.outputs.values())
    lines += [f"    {ident[v.name]} = P[{v.name!r}]" for v in graph.params if v.name in used_params]
    for i, node in enumerate(graph.nodes):
        opdef = get_op(node.op)
        fname = f"L{i}"
        static = {k: v for k, v in node.attrs.items()
                  if not (opdef.attrs[k].kind == "dims" and any(isinstance(d, str) for d in v))}
        dynamic = {k: "(" + "".join(_dim_code(d) + ", " for d in v) + ")" for k, v in node.attrs.items() if k not in static}
        if overrides and i in overrides:
            f = overrides[i]
        else:
            f = lowerings[node.op]
            if casts is not None:
                f = casts.lowering(node.op, f, [None if n is None else graph.values[n].dtype for n in node.inputs])
        namespace[fname] = _bind(f, static)
        for o in node.outputs:
            ident[o.name] = f"v{len(ident)}"
        args = [("None" if n is None else ident[n]) for n in node.inputs]
        args += [f"{k}={code}" for k, code in dynamic.items()]
        outs = ", ".join(ident[o.name] for o in node.outputs)
        lines.append(f"    {outs} = {fname}({', '.join(args)})")
        dead = [ident[n] for n in dict.fromkeys(node.inputs) if n is not None and last_use.get(n) == i and n not in keep]
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    lines.append("    return {" + ", ".join(f"{k!r}: {ident[v]}" for k, v in graph.outputs.items()) + "}")
    source = "\n".join(lines)
    exec(compile(source, f"<isoform:{graph.name}>", "exec"), namespace)  # source is generated above, not user text
    run = namespace[fn_name]
    run.source = source
    return run


def _bind(f: Lowering, attrs: dict[str, Any]) -> Lowering:
    if not attrs:
        return f

    def call(*args: Any, **dynamic: Any) -> Any:
        return f(*args, **attrs, **dynamic)

    return call
