"""The TensorFlow backend: a graph becomes one `tf.function` over the parameters held as `tf.Variable`s
of a `tf.Module`.

The function has a dynamic input signature (`None` for every symbolic dim), so all batch and sequence
sizes share one trace; inside it symbolic sizes are scalar tensors read with `tf.shape`, and `dims`
attributes arrive as mixes of Python ints and such scalars. Calls go to the traced concrete function
(less dispatch than the `tf.function`). It runs without XLA by default (`jit_compile=False`): on CPU,
XLA recompiles for every new input shape and was not faster on a BERT-sized block.

Natively lowered composites: softmax, log_softmax, gelu, sigmoid, silu (`tf.nn`; exact gelu with
one big temporary fewer than `tf.nn.gelu`), layer_norm (`tf.nn.moments`) and attention (matmul with
`transpose_b` of the scaled queries, masking, softmax: TF has no fused CPU kernel; this is as fast as
the decomposition and skips its transposes). rms_norm is decomposed.
Projections ([..., K] @ [K, N]) run as one 2-d MatMul over flattened rows: TF's broadcasting BatchMatMul
took 1.5x transformers' time on BERT-base at batch 8, the 2-d kernel 1.0x.

Half precision follows `OpDef.half` (`base.Casts`): "upcast" ops given f16/bf16 values compute in
f32 and round once, as the NumPy reference does. Workarounds for CPU kernels: conv runs channels-last
(no NCHW on CPU) and so do the pointwise ops, norms and transposes between convs (`channels_last`: a
conv stack such as Wav2Vec2's feature encoder transposes its activations once, not around every conv;
Wav2Vec2-base on 10 s of audio 2.08 -> 1.80 s per call), 3-d grouped conv runs one conv per group,
stride with dilation strides by slicing, order comparisons of bools compare as int8, and
dynamic_update_slice pads the update and selects it (no CPU kernel without XLA).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..environment import quiet_tensorflow
from ..ir import Graph
from ..ir.dtypes import DType
from .base import (
    TRAINING_ONLY,
    Backend,
    Casts,
    Lowering,
    Program,
    check_inputs,
    check_params,
    generate,
    symbol_sizes,
)

quiet_tensorflow()  # also when this module is imported directly, not through backends.get
import tensorflow as tf  # noqa: E402

_TF = {DType.f32: tf.float32, DType.f16: tf.float16, DType.bf16: tf.bfloat16, DType.i32: tf.int32,
       DType.i64: tf.int64, DType.bool: tf.bool}
_CASTS = Casts(_TF.__getitem__, (tf.float16, tf.bfloat16), tf.float32, tf.cast)
_NATIVE = (tf.Tensor, tf.Variable)


class TensorflowBackend(Backend):
    """Lowers graphs to a `tf.function`; parameters are `tf.Variable`s (float ones trainable)."""

    name = "tensorflow"
    framework = "tensorflow"
    extra = "tensorflow"
    #: Compile with XLA. Off: on a BERT-base layer (CPU, seq 128) XLA was no faster, and it compiles
    #: again for every new input shape, which defeats the single dynamic-shape trace.
    jit_compile = False

    def compile(self, graph: Graph, params: Mapping[str, Any]) -> TensorflowProgram:
        check_params(self.name, graph, params)
        return TensorflowProgram(self, graph, params)

    def to_native(self, array: Any, dtype: DType) -> tf.Variable:
        return tf.Variable(_tensor(array, dtype), trainable=dtype.is_float)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _tensor(x: Any, dtype: DType) -> tf.Tensor:
    if isinstance(x, _NATIVE):
        return x if x.dtype == _TF[dtype] else tf.cast(x, _TF[dtype])
    return tf.convert_to_tensor(np.asarray(x).astype(dtype.numpy, copy=False))


def _variable(x: Any, name: str, dtype: DType) -> tf.Variable:
    if isinstance(x, tf.Variable) and x.dtype == _TF[dtype]:
        return x
    return tf.Variable(_tensor(x, dtype), trainable=dtype.is_float, name=re.sub(r"[^A-Za-z0-9_.\-/]", "_", name))


def _static_or_dynamic(x: tf.Tensor, i: int) -> Any:
    return x.shape[i] if x.shape[i] is not None else tf.shape(x)[i]


class TensorflowProgram(Program):
    """A compiled graph. `module` (= `params`) is a `tf.Module` whose `variables_by_name` maps graph
    parameter names to `tf.Variable`s (`module.trainable_variables` lists the float ones); `function`
    is the `tf.function` (one trace for all input sizes), also reachable as `module.forward`."""

    def __init__(self, backend: TensorflowBackend, graph: Graph, params: Mapping[str, Any]):
        super().__init__(backend, graph)
        self.module = self.params = tf.Module(name=re.sub(r"\W", "_", graph.name))
        self.module.variables_by_name = {p.name: _variable(params[p.name], p.name, p.dtype)
                                         for p in graph.params}
        self.function = self.module.forward = self._function(backend.prepare(graph))
        self._inputs = [(v.name, _TF[v.dtype], v.dtype.numpy) for v in graph.inputs]
        self._traced: Callable[..., dict[str, tf.Tensor]] | None = None
        self._dropout = any(n.op in TRAINING_ONLY for n in graph.nodes)
        self._training_function: Callable[..., dict[str, tf.Tensor]] | None = None

    def _function(self, prepared: Graph) -> Callable[..., dict[str, tf.Tensor]]:
        """The `tf.function` running ``prepared`` (one trace for all input sizes)."""
        graph, variables = self.graph, self.module.variables_by_name
        run = generate(prepared, self.backend.lowerings, casts=_CASTS, overrides=channels_last(prepared))
        names = [v.name for v in graph.inputs]

        def forward(*args: tf.Tensor) -> dict[str, tf.Tensor]:
            inputs = dict(zip(names, args))
            return run(variables, inputs, symbol_sizes(graph, inputs, _static_or_dynamic))

        signature = [tf.TensorSpec([d if isinstance(d, int) else None for d in v.shape], _TF[v.dtype])
                     for v in graph.inputs]
        return tf.function(forward, input_signature=signature, jit_compile=self.backend.jit_compile, autograph=False)

    training = False  # set by `train`: calls then run the training program (dropout, `tf.random`'s seeds)

    def train(self, mode: bool = True) -> None:
        self.training = mode

    def warmup(self, **example_inputs: Any) -> float:
        """Trace the function now (one trace serves all input sizes) and, given example inputs, run it
        once on them (TF optimises the graph on its first run; XLA compiles per shape); returns seconds."""
        start = time.perf_counter()
        self._traced = self.function.get_concrete_function()
        if example_inputs:
            self(**example_inputs)
        return time.perf_counter() - start

    def __call__(self, **inputs: Any) -> dict[str, tf.Tensor]:
        inputs = {k: x if isinstance(x, _NATIVE) else np.asarray(x) for k, x in inputs.items()}
        check_inputs(self.graph, inputs, _shape_of, _dtype_of)
        args = []
        for name, tf_dtype, np_dtype in self._inputs:
            x = inputs[name]
            if isinstance(x, np.ndarray):
                args.append(x if x.dtype == np_dtype else x.astype(np_dtype))
            else:
                args.append(x if x.dtype == tf_dtype else tf.cast(x, tf_dtype))
        if self.training and self._dropout:
            if self._training_function is None:
                self._training_function = self._function(self.backend.prepare(self.graph, training=True))
            return self._training_function(*args)
        if self._traced is None:
            self.warmup()
        return self._traced(*args)  # the concrete function: ~100 us less dispatch than the tf.function

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.module.variables_by_name.items()}

    def native_params(self) -> Mapping[str, tf.Variable]:
        return self.module.variables_by_name


def _shape_of(x: Any) -> tuple[int, ...]:
    return tuple(x.shape)


def _dtype_of(x: Any) -> np.dtype:
    return x.dtype.as_numpy_dtype if isinstance(x, _NATIVE) else x.dtype


backend = TensorflowBackend()
lower = backend.lower


def _shape(dims: Any) -> Any:
    """A shape for TF ops from ints and scalar tensors."""
    if all(isinstance(d, int) for d in dims):
        return list(dims)
    return tf.stack([tf.cast(d, tf.int32) for d in dims])


# -- elementwise -----------------------------------------------------------------------------------
_ELEMENTWISE = {
    "add": tf.add, "sub": tf.subtract, "mul": tf.multiply, "div": tf.divide, "pow": tf.pow,
    "maximum": tf.maximum, "minimum": tf.minimum, "neg": tf.negative, "abs": tf.abs, "exp": tf.exp,
    "log": tf.math.log, "sqrt": tf.sqrt, "rsqrt": tf.math.rsqrt, "tanh": tf.tanh, "erf": tf.math.erf,
    "sin": tf.sin, "cos": tf.cos, "floor": tf.floor, "eq": tf.equal, "ne": tf.not_equal,
    "logical_and": tf.logical_and, "logical_or": tf.logical_or, "logical_not": tf.logical_not,
    "where": tf.where, "sigmoid": tf.sigmoid, "silu": tf.nn.silu,
}
for _op, _fn in _ELEMENTWISE.items():
    lower(_op)(_fn)


def _ordered(tf_fn: Callable[..., Any]) -> Lowering:
    """An order comparison; TF has no bool kernels for these, so bools compare as int8."""

    def compare(a, b):
        return tf_fn(tf.cast(a, tf.int8), tf.cast(b, tf.int8)) if a.dtype == tf.bool else tf_fn(a, b)

    return compare


for _op, _fn in {"lt": tf.less, "le": tf.less_equal, "gt": tf.greater, "ge": tf.greater_equal}.items():
    lower(_op)(_ordered(_fn))


@lower("cast")
def _cast(x, *, dtype):
    return tf.cast(x, _TF[dtype])  # float -> int truncates toward zero, like the reference


@lower("constant")
def _constant(*, value, dtype):
    return tf.constant(np.asarray(value).astype(dtype.numpy))


@lower("iota")
def _iota(*, shape, axis, dtype):
    axis %= len(shape)
    r = tf.range(tf.cast(shape[axis], _TF[dtype]), dtype=_TF[dtype])
    r = tf.reshape(r, [-1 if i == axis else 1 for i in range(len(shape))])
    return tf.broadcast_to(r, _shape(shape))


# -- reductions and scans --------------------------------------------------------------------------
def _reduction(tf_fn: Callable[..., Any]) -> Lowering:
    return lambda x, *, axes, keepdims: tf_fn(x, axis=axes, keepdims=keepdims)


lower("reduce_sum")(_reduction(tf.reduce_sum))
lower("reduce_mean")(_reduction(tf.reduce_mean))
lower("reduce_max")(_reduction(tf.reduce_max))
lower("reduce_min")(_reduction(tf.reduce_min))


@lower("argmax")
def _argmax(x, *, axis, keepdims):
    out = tf.math.argmax(x, axis=axis, output_type=tf.int64)
    return tf.expand_dims(out, axis) if keepdims else out


@lower("cumsum")
def _cumsum(x, *, axis, exclusive, reverse):
    return tf.math.cumsum(x, axis=axis, exclusive=exclusive, reverse=reverse)


@lower("top_k")
def _top_k(x, *, k):
    values, indices = tf.math.top_k(x, k=k, sorted=True)  # ties: lower index first, as specified
    return values, tf.cast(indices, tf.int64)


# -- shape and indexing ----------------------------------------------------------------------------
@lower("reshape")
def _reshape(x, *, shape):
    return tf.reshape(x, _shape(shape))


@lower("transpose")
def _transpose(x, *, perm):
    return tf.transpose(x, perm)


@lower("broadcast_to")
def _broadcast_to(x, *, shape):
    return tf.broadcast_to(x, _shape(shape))


@lower("slice")
def _slice(x, *, axes, starts, stops, steps):
    index = [slice(None)] * len(x.shape)
    for a, s, e, st in zip(axes, starts, stops, steps):
        index[a] = slice(s, e, st)
    return x[tuple(index)]


@lower("concat")
def _concat(*xs, axis):
    return tf.concat(xs, axis=axis)


@lower("gather")
def _gather(x, indices, *, axis):
    n = tf.cast(tf.shape(x)[axis], indices.dtype)
    return tf.gather(x, tf.where(indices < 0, indices + n, indices), axis=axis)


@lower("pad")
def _pad(x, *, pads, value):
    return tf.pad(x, pads, constant_values=np.asarray(value).astype(x.dtype.as_numpy_dtype))


def _clamp_starts(x, starts, sizes) -> list[tf.Tensor]:
    dims = tf.shape(x)
    return [tf.clip_by_value(tf.cast(s, tf.int32), 0, dims[i] - tf.cast(n, tf.int32))
            for i, (s, n) in enumerate(zip(starts, sizes))]


@lower("dynamic_slice")
def _dynamic_slice(x, *starts, sizes):
    return tf.slice(x, tf.stack(_clamp_starts(x, starts, sizes)), _shape(sizes))


@lower("dynamic_update_slice")
def _dynamic_update_slice(x, update, *starts):
    """Pad `update` to x's shape at the clamped starts and select it where it lands (differentiable)."""
    dims, sizes = tf.shape(x), tf.shape(update)
    begin = _clamp_starts(x, starts, tf.unstack(sizes, num=len(starts)))
    inside = None
    for i, b in enumerate(begin):
        pos = tf.range(dims[i])
        hit = tf.reshape((pos >= b) & (pos < b + sizes[i]), [-1 if j == i else 1 for j in range(len(begin))])
        inside = hit if inside is None else inside & hit
    padded = tf.pad(update, tf.stack([tf.stack([b, dims[i] - b - sizes[i]]) for i, b in enumerate(begin)]))
    out = tf.where(inside, padded, x)
    out.set_shape(x.shape)  # static dims survive (the padded update's shape is dynamic)
    return out


# -- contractions ----------------------------------------------------------------------------------
@lower("matmul")
def _matmul(a, b):
    """[..., K] @ [K, N] as one 2-d MatMul over the flattened rows (see the module docstring)."""
    if len(b.shape) != 2 or len(a.shape) == 2:
        return tf.linalg.matmul(a, b)
    rows = tf.reshape(a, [-1, tf.shape(a)[-1]])
    out = tf.reshape(tf.linalg.matmul(rows, b), tf.concat([tf.shape(a)[:-1], tf.shape(b)[-1:]], 0))
    out.set_shape(a.shape[:-1].concatenate(b.shape[-1:]))
    return out


@lower("conv")
def _conv(x, w, *, stride, padding, dilation, groups):
    """NC* conv through TF's channels-last kernels (CPU has no NCHW conv): see `_conv_last`."""
    y = _conv_last(tf.transpose(x, _to_last(len(x.shape))), w, stride=stride, padding=padding, dilation=dilation,
                   groups=groups)
    return tf.transpose(y, _to_first(len(y.shape)))


def _conv_last(x, w, *, stride, padding, dilation, groups):
    """The conv of channels-last x, channels-last out; groups follow from the filter's input-channel
    count (1-d/2-d). TF refuses stride > 1 with dilation > 1: then stride by slicing."""
    n = len(stride)
    if any(lo or hi for lo, hi in padding):
        x = tf.pad(x, [[0, 0], *padding, [0, 0]])
    w = tf.transpose(w, [*range(2, n + 2), 1, 0])
    both = any(s > 1 for s in stride) and any(d > 1 for d in dilation)
    strides = [1] * n if both else stride
    if groups > 1 and n == 3:  # Conv3D has no grouped CPU kernel: one conv per group
        y = tf.concat([tf.nn.convolution(xg, wg, strides=strides, padding="VALID", dilations=dilation)
                       for xg, wg in zip(tf.split(x, groups, axis=-1), tf.split(w, groups, axis=-1))], axis=-1)
    else:
        y = tf.nn.convolution(x, w, strides=strides, padding="VALID", dilations=dilation)
    if both:
        y = y[(slice(None), *(slice(None, None, s) for s in stride))]
    return y


# -- composites ------------------------------------------------------------------------------------
lower("dropout")(lambda x, *, rate: tf.nn.dropout(x, rate=rate))  # training programs only (`TRAINING_ONLY`)
lower("softmax")(lambda x, *, axis: tf.nn.softmax(x, axis=axis))
lower("log_softmax")(lambda x, *, axis: tf.nn.log_softmax(x, axis=axis))


@lower("gelu")
def _gelu(x, *, approximate):
    """tf.nn.gelu, the exact form as x * (erfc(-x / sqrt 2) / 2): tf.nn.gelu's (0.5 * x) * erfc(...)
    with one big temporary fewer (halving is exact, so the values are the same)."""
    if approximate == "tanh":
        return tf.nn.gelu(x, approximate=True)
    return x * (0.5 * tf.math.erfc(x * -0.7071067811865476))


@lower("layer_norm")
def _layer_norm(x, weight=None, bias=None, *, eps):
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    y = (x - mean) * tf.math.rsqrt(var + eps)
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


@lower("attention")
def _attention(q, k, v, mask=None, *, scale, causal):
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = tf.repeat(k, groups, axis=1), tf.repeat(v, groups, axis=1)
    if scale is None:
        d = q.shape[-1]
        scale = 1.0 / math.sqrt(d) if d is not None else tf.math.rsqrt(tf.cast(tf.shape(q)[-1], q.dtype))
    s = tf.linalg.matmul(q * scale, k, transpose_b=True)  # scaling q, not the larger scores: one pass fewer over them
    low = q.dtype.min
    if mask is not None:
        s = tf.where(mask, s, low) if mask.dtype == tf.bool else s + mask
    if causal:
        sq, sk = tf.shape(s)[-2], tf.shape(s)[-1]
        s = tf.where(tf.range(sq)[:, None] >= tf.range(sk)[None, :], s, low)
    return tf.linalg.matmul(tf.nn.softmax(s, axis=-1), v)


# -- channels-last layout --------------------------------------------------------------------------
#: Ops applied element by element (NumPy broadcasting, no axis attributes): they run in any layout.
_POINTWISE = frozenset({*_ELEMENTWISE, "lt", "le", "gt", "ge", "cast", "gelu"})
_SMALL = 1 << 16  # elements: a static operand this small is moved channels-last at no real cost


def _to_last(rank: int) -> list[int]:
    """The perm moving axis 1 (channels) last: NC* -> N*C."""
    return [0, *range(2, rank), 1]


def _to_first(rank: int) -> list[int]:
    """The inverse of `_to_last`: N*C -> NC*."""
    return [0, rank - 1, *range(1, rank - 1)]


def channels_last(graph: Graph) -> dict[int, Lowering]:
    """Node lowerings (`generate`'s overrides) holding conv activations channels-last between convs.

    The IR's conv is NC*, TF's CPU kernels N*C, so a conv alone transposes its input and output; in a
    conv stack (an audio feature encoder, say) those transposes of big activations cost as much as
    the norms and activations between the convs. So conv outputs stay channels-last (N*C) and so do
    the outputs of pointwise ops, of layer_norm (over the IR's last axis) and of transposes fed by
    them, while their other operands are small or channels-last too; a transpose that undoes the
    layout (NC* <-> N*C, as around a positional conv) becomes free. Every other consumer, and every
    graph output, gets the IR layout back by one transpose. Returns {} where there is no conv."""
    if not any(node.op == "conv" for node in graph.nodes):
        return {}
    uses: dict[str, list[str]] = {}
    for node in graph.nodes:
        for n in node.inputs:
            if n is not None:
                uses.setdefault(n, []).append(node.op)
    outputs = set(graph.outputs.values())
    last: set[str] = set()  # values held channels-last
    overrides: dict[int, Lowering] = {}
    for i, node in enumerate(graph.nodes):
        held = [n is not None and n in last for n in node.inputs]
        out = node.outputs[0]
        rank, free = len(out.shape), out.name not in outputs
        dtypes = [None if n is None else graph.values[n].dtype for n in node.inputs]
        lowering = _CASTS.lowering(node.op, backend.lowerings[node.op], dtypes)
        if node.op == "conv" and free:
            f = _CASTS.lowering("conv", _conv_last, dtypes)
            overrides[i] = f if held[0] else _relaid(f, [_to_last(rank), None])
            last.add(out.name)
        elif node.op == "transpose":
            perm, r = list(node.attrs["perm"]), rank
            if held[0]:
                into_last = [_to_first(r)[perm[p]] for p in _to_last(r)]
                if free and into_last == list(range(r)):
                    overrides[i] = _identity
                    last.add(out.name)
                else:
                    overrides[i] = _transposer([_to_first(r)[p] for p in perm])
            elif free and rank >= 3 and uses.get(out.name) and all(op == "conv" for op in uses[out.name]):
                overrides[i] = _transposer([perm[p] for p in _to_last(r)])  # the conv's input, channels-last
                last.add(out.name)
        elif free and rank >= 3 and any(held) and _relayable(graph, node, held):
            into = [None if h or n is None else _lift(graph.values[n].shape, rank) for n, h in zip(node.inputs, held)]
            if node.op == "layer_norm":
                lowering = _CASTS.lowering("layer_norm", _layer_norm_last, dtypes)
                into = [None] * len(into)
            overrides[i] = _relaid(lowering, into)
            last.add(out.name)
        elif any(held):
            overrides[i] = _relaid(lowering, [_to_first(len(graph.values[n].shape)) if h else None
                                              for n, h in zip(node.inputs, held)])
    return overrides


def _relayable(graph: Graph, node: Any, held: list[bool]) -> bool:
    """Whether `node` (with some input channels-last) can compute channels-last: a pointwise op whose
    other operands are small, or layer_norm of a channels-last value."""
    rank = len(node.outputs[0].shape)
    if node.op == "layer_norm":
        return held[0]
    if node.op not in _POINTWISE:
        return False
    for n, h in zip(node.inputs, held):
        shape = graph.values[n].shape
        if h and len(shape) != rank:
            return False
        if not h and not (all(isinstance(d, int) for d in shape) and math.prod(shape) <= _SMALL):
            return False
    return True


def _lift(shape: tuple[int, ...], rank: int) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """Moves a small static operand broadcast against rank-`rank` values channels-last."""
    if not shape:
        return None
    full = [1] * (rank - len(shape)) + list(shape)
    moved = [full[p] for p in _to_last(rank)]
    if [d for d in full if d != 1] == [d for d in moved if d != 1]:  # as a per-channel [1, C, 1] operand
        return lambda x: tf.reshape(x, moved)
    return lambda x: tf.transpose(tf.reshape(x, full), _to_last(rank))


def _relaid(f: Lowering, into: list[Any]) -> Lowering:
    """`f` with its inputs first re-laid: by a perm (list), a function, or kept (None)."""

    def call(*args, **attrs):
        args = [a if p is None or a is None else p(a) if callable(p) else tf.transpose(a, p) for a, p in zip(args, into)]
        return f(*args, **attrs)

    return call


def _transposer(perm: list[int]) -> Lowering:
    """A transpose node's lowering by `perm` in place of its own (the node's attributes are ignored)."""
    if perm == list(range(len(perm))):
        return _identity
    return lambda x, **_: tf.transpose(x, perm)


def _identity(x, **_):
    return x


def _layer_norm_last(x, weight=None, bias=None, *, eps):
    """layer_norm over the IR's last axis of a channels-last value (TF axis -2), as group norm of
    conv features: the variance from the Euclidean norm of the centred values, which makes no
    temporary of squares (`tf.nn.moments` makes one)."""
    axis = len(x.shape) - 2
    d = x - tf.reduce_mean(x, axis, keepdims=True)
    var = _sum_of_squares(d, axis) / tf.cast(tf.shape(x)[axis], x.dtype)
    y = d * tf.math.rsqrt(var + eps)
    y = y if weight is None else y * tf.reshape(weight, [-1, 1])
    return y if bias is None else y + tf.reshape(bias, [-1, 1])


def _sum_of_squares(d: tf.Tensor, axis: int) -> tf.Tensor:
    """The sum of d ** 2 along `axis` (kept) as the square of `reduce_euclidean_norm`, with the
    gradient 2 d (the norm's own is 0 / 0 where d is all zeros, a constant channel)."""

    @tf.custom_gradient
    def squares(d):
        return tf.square(tf.math.reduce_euclidean_norm(d, axis, keepdims=True)), lambda g: 2.0 * d * g

    return squares(d)
