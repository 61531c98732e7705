"""GraphBuilder and Tensor: how layer code writes graphs.

    g = GraphBuilder("mlp")
    x = g.input("x", ["batch", 16], "f32")
    w = g.param("fc.weight", [16, 4])
    g.output("y", fn.gelu(x @ w))
    graph = g.build()

`Tensor` overloads arithmetic (`+ - * / @ **`, unary `-`) and has `reshape`, `transpose`, `cast`,
indexing with ints and slices, and reductions. Every op in the registry is also a function of the
`fn` namespace: ``fn.softmax(x, axis=-1)``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import GraphError
from . import dims as D
from .dtypes import DType, as_dtype
from .graph import Graph, Node, Value
from .registry import TensorType, get_op


class Tensor:
    """A value being built: the builder it belongs to, its name and type."""

    __slots__ = ("builder", "name", "type")

    def __init__(self, builder: GraphBuilder, name: str, type: TensorType):
        self.builder, self.name, self.type = builder, name, type

    shape = property(lambda self: self.type.shape)
    dtype = property(lambda self: self.type.dtype)
    ndim = property(lambda self: len(self.type.shape))

    def __repr__(self) -> str:
        return f"<Tensor %{self.name}: {self.type}>"

    def _op(self, op: str, *args: Any, **attrs: Any) -> Tensor:
        return self.builder.add(op, self, *args, **attrs)

    def _rop(self, op: str, other: Any) -> Tensor:
        return self.builder.add(op, other, self)

    __add__ = lambda self, o: self._op("add", o)
    __radd__ = lambda self, o: self._rop("add", o)
    __sub__ = lambda self, o: self._op("sub", o)
    __rsub__ = lambda self, o: self._rop("sub", o)
    __mul__ = lambda self, o: self._op("mul", o)
    __rmul__ = lambda self, o: self._rop("mul", o)
    __truediv__ = lambda self, o: self._op("div", o)
    __rtruediv__ = lambda self, o: self._rop("div", o)
    __pow__ = lambda self, o: self._op("pow", o)
    __matmul__ = lambda self, o: self._op("matmul", o)
    __neg__ = lambda self: self._op("neg")

    def reshape(self, *shape: D.Dim) -> Tensor:
        return self._op("reshape", shape=list(shape))

    def transpose(self, *perm: int) -> Tensor:
        return self._op("transpose", perm=list(perm))

    def cast(self, dtype: DType | str) -> Tensor:
        dtype = as_dtype(dtype)
        return self if dtype == self.dtype else self._op("cast", dtype=dtype)

    def sum(self, axes: int | Sequence[int], keepdims: bool = False) -> Tensor:
        return self._op("reduce_sum", axes=_axes(axes), keepdims=keepdims)

    def mean(self, axes: int | Sequence[int], keepdims: bool = False) -> Tensor:
        return self._op("reduce_mean", axes=_axes(axes), keepdims=keepdims)

    def max(self, axes: int | Sequence[int], keepdims: bool = False) -> Tensor:
        return self._op("reduce_max", axes=_axes(axes), keepdims=keepdims)

    def __getitem__(self, index: Any) -> Tensor:
        """Basic indexing: ints, slices with int bounds, `...` and None (new axis)."""
        index = index if isinstance(index, tuple) else (index,)
        if any(not (i is None or i is Ellipsis or isinstance(i, int | slice)) for i in index):
            raise GraphError(f"unsupported index {index!r}: use ints, slices, ... or None (gather for tensors)")
        real = sum(i is not None and i is not Ellipsis for i in index)
        if real > self.ndim:
            raise GraphError(f"too many indices for {self!r}")
        if Ellipsis in index:
            k = index.index(Ellipsis)
            index = index[:k] + (slice(None),) * (self.ndim - real) + index[k + 1:]
        index += (slice(None),) * (self.ndim - sum(i is not None for i in index))
        axes, starts, stops, steps = [], [], [], []
        for dim, i in enumerate(i for i in index if i is not None):
            if isinstance(i, int):
                axes.append(dim), starts.append(i), stops.append(None if i == -1 else i + 1), steps.append(1)
            elif i != slice(None):
                axes.append(dim), starts.append(i.start or 0), stops.append(i.stop), steps.append(i.step or 1)
        x = self._op("slice", axes=axes, starts=starts, stops=stops, steps=steps) if axes else self
        kept = iter(d for d, i in zip(x.shape, (i for i in index if i is not None)) if not isinstance(i, int))
        shape = [1 if i is None else next(kept) for i in index if not isinstance(i, int)]
        return x if tuple(shape) == x.shape else x.reshape(*shape)


#: Most nodes one graph may have: a bound on what a config can make a build create (the largest
#: supported graphs have tens of thousands).
MAX_NODES = 1_000_000

ParamCheck = Callable[[str, tuple[int, ...]], None]
_param_check: contextvars.ContextVar[ParamCheck | None] = contextvars.ContextVar("param_check", default=None)


@contextlib.contextmanager
def checking_params(check: ParamCheck) -> Iterator[None]:
    """Within the block, every parameter a builder declares is passed to ``check(name, shape)``
    first (it raises to stop the build: `Model.load` stops at the first parameter the checkpoint
    cannot supply, before a bad config builds more)."""
    token = _param_check.set(check)
    try:
        yield
    finally:
        _param_check.reset(token)


#: Metadata key of the taps: ``{kind: [value names]}`` (see `GraphBuilder.tap`, `isoform.ir.rewrite`).
TAPS = "taps"
TAP_KINDS = ("hidden_states", "attentions", "cross_attentions", "inputs_embeds", "position_ids")


TAP_SCOPES = ("encoder", "decoder", "text", "vision")


def tap_name(scope: str | None, kind: str) -> str:
    """A tap's name as transformers names the output or argument: ``kind`` in a decoder-only or encoder
    graph; in an encoder-decoder, ``encoder_hidden_states``/``encoder_attentions`` (its inputs stay
    ``inputs_embeds``), and ``decoder_<kind>`` (but ``cross_attentions``) in the decoder; in the towers of
    a multi-tower model ``text_<kind>``, ``vision_<kind>`` (transformers nests those in ``text_model_output``, ...)."""
    if scope in ("text", "vision"):
        return f"{scope}_{kind}"
    if scope == "encoder":
        return f"encoder_{kind}" if kind in ("hidden_states", "attentions") else kind
    if scope == "decoder" and kind != "cross_attentions":
        return f"decoder_{kind}"
    return kind


def _axes(axes: int | Sequence[int]) -> list[int]:
    return [axes] if isinstance(axes, int) else list(axes)


class GraphBuilder:
    """Builds a Graph: declare inputs and parameters, add ops, name outputs, then `build()`.

    `dtype` is the float dtype parameters get by default (the model's compute dtype)."""

    def __init__(self, name: str, *, dtype: DType | str = DType.f32, metadata: dict[str, Any] | None = None):
        self.name = name
        self.dtype = as_dtype(dtype)
        self.metadata = dict(metadata or {})
        self._inputs: list[Value] = []
        self._params: dict[str, Value] = {}
        self._nodes: list[Node] = []
        self._outputs: dict[str, str] = {}
        self._values: dict[str, Value] = {}
        self._constants: dict[tuple, Tensor] = {}
        self._counter = 0
        self._scope: str | None = None

    def _tensor(self, v: Value) -> Tensor:
        return Tensor(self, v.name, v.type)

    def input(self, name: str, shape: Sequence[D.Dim], dtype: DType | str, *,
              sharding: Sequence[str | None] | None = None) -> Tensor:
        """Declare a graph input; dims are ints or symbolic names such as "batch". ``sharding``: the
        logical axis of each dim (`isoform.ir.graph.Sharding`; dims named "batch" go over "data" anyway)."""
        v = Value(name, TensorType(tuple(D.canonical(d) for d in shape), as_dtype(dtype)),
                  None if sharding is None else tuple(sharding))
        self._declare(v)
        self._inputs.append(v)
        return self._tensor(v)

    def param(self, name: str, shape: Sequence[int], dtype: DType | str | None = None, *,
              sharding: Sequence[str | None] | None = None) -> Tensor:
        """Declare (or fetch, if already declared with the same type) a parameter. ``sharding``: the
        logical axis each dim is split over, e.g. ``(None, "model")`` (None: replicated); a fetch
        may add a sharding to a parameter declared without one, never change it."""
        t = TensorType(tuple(int(d) for d in shape), as_dtype(dtype or self.dtype))
        sharding = None if sharding is None else tuple(sharding)
        if name in self._params:
            known = self._params[name]
            if known.type != t or (None not in (sharding, known.sharding) and sharding != known.sharding):
                raise GraphError(f"parameter {name!r} declared as {known.type} sharded {known.sharding} and as {t} "
                                 f"sharded {sharding}")
            if known.sharding is None and sharding is not None:
                self._params[name] = self._values[name] = known = Value(name, t, sharding)
            return self._tensor(known)
        check = _param_check.get()
        if check is not None:
            check(name, t.shape)
        v = Value(name, t, sharding)
        self._declare(v)
        self._params[name] = v
        return self._tensor(v)

    def _declare(self, v: Value) -> None:
        if v.name in self._values:
            raise GraphError(f"value {v.name!r} is declared twice")
        self._values[v.name] = v

    def constant(self, value: Any, dtype: DType | str) -> Tensor:
        """A constant tensor (scalar or small nested list); identical constants are shared."""
        dtype = as_dtype(dtype)
        key = (repr(value), dtype)
        if key not in self._constants:
            self._constants[key] = self.add("constant", value=value, dtype=dtype)
        return self._constants[key]

    def add(self, op: str, *inputs: Any, **attrs: Any) -> Any:
        """Append a node; returns its output Tensor (a tuple for multi-output ops). Python numbers
        among the inputs become constants of the dtype of the first Tensor input."""
        opdef = get_op(op)
        where = f"node {len(self._nodes)} ({op})"
        if len(self._nodes) >= MAX_NODES:
            raise GraphError(f"graph {self.name!r} reached {MAX_NODES} nodes at {where}: the config asks for "
                             "a larger model than isoform builds (check its layer counts and sizes)")
        opdef.check_arity(len(inputs), where)
        like = next((i for i in inputs if isinstance(i, Tensor)), None)
        args: list[Tensor | None] = []
        for i in inputs:
            if isinstance(i, int | float) and not isinstance(i, bool) and like is not None:
                i = self.constant(i, like.dtype)
            if i is not None and not isinstance(i, Tensor):
                raise GraphError(f"{where}: inputs must be Tensors, None or numbers, got {type(i).__name__}")
            if i is not None and i.builder is not self:
                raise GraphError(f"{where}: input %{i.name} belongs to another graph builder")
            args.append(i)
        attrs = opdef.normalize_attrs(attrs, where)
        try:
            types = opdef.infer(*[None if a is None else a.type for a in args], **attrs)
        except GraphError as e:
            raise GraphError(f"{where}: {e}") from None
        outs = []
        for t in types:
            v = Value(str(self._counter), t)
            self._counter += 1
            self._declare(v)
            outs.append(v)
        self._nodes.append(Node(op, tuple(None if a is None else a.name for a in args), attrs, tuple(outs)))
        result = tuple(self._tensor(v) for v in outs)
        return result if opdef.num_outputs > 1 else result[0]

    def tap(self, kind: str, tensor: Tensor) -> Tensor:
        """Record ``tensor`` as a tap of ``kind`` (one of `TAP_KINDS`: a layer boundary of
        ``hidden_states``, the output of an ``attention`` node counted in ``attentions`` /
        ``cross_attentions``, the word-embedding lookup ``inputs_embeds``, the ``position_ids``) under
        its `tap_name` in the current `tap_scope`, in ``metadata["taps"]``; returns ``tensor``.
        `isoform.ir.rewrite` turns taps into outputs or inputs."""
        if kind not in TAP_KINDS:
            raise GraphError(f"unknown tap kind {kind!r}; kinds: {', '.join(TAP_KINDS)}")
        if tensor.builder is not self:
            raise GraphError(f"tap {kind!r}: %{tensor.name} belongs to another graph builder")
        self.metadata.setdefault(TAPS, {}).setdefault(tap_name(self._scope, kind), []).append(tensor.name)
        return tensor

    @contextlib.contextmanager
    def tap_scope(self, scope: str) -> Iterator[None]:
        """Within the block, taps belong to the ``"encoder"`` or ``"decoder"`` of an encoder-decoder, or
        to the ``"text"`` or ``"vision"`` tower (see `tap_name`)."""
        if scope not in TAP_SCOPES:
            raise GraphError(f"tap scope must be one of {', '.join(TAP_SCOPES)}, got {scope!r}")
        outer, self._scope = self._scope, scope
        try:
            yield
        finally:
            self._scope = outer

    def output(self, name: str, tensor: Tensor) -> None:
        if name in self._outputs:
            raise GraphError(f"output {name!r} is set twice")
        self._outputs[name] = tensor.name

    def build(self) -> Graph:
        """Validate and return the immutable Graph."""
        if not self._outputs:
            raise GraphError(f"graph {self.name!r} has no outputs")
        return Graph(self.name, self._inputs, list(self._params.values()), self._nodes, self._outputs, self.metadata)


class _Fn:
    """`fn.<op>(*inputs, **attrs)` for every registered op; the builder is taken from the inputs."""

    def __getattr__(self, op: str) -> Any:
        get_op(op)

        def apply(*inputs: Any, **attrs: Any) -> Any:
            builder = next((i.builder for i in inputs if isinstance(i, Tensor)), None)
            if builder is None:
                raise GraphError(f"fn.{op} needs at least one Tensor input to know its graph")
            return builder.add(op, *inputs, **attrs)

        apply.__name__ = op
        return apply


fn = _Fn()
