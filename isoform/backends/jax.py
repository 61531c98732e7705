"""The JAX backend: a graph becomes one pure, jitted function over a flat parameter pytree.

    program = backend.compile(graph, params)
    program.params                      # {param name: jax.Array}: a pytree for jax.grad / optax
    program.fn(program.params, inputs)  # pure and jitted: dict of inputs -> dict of outputs
    program(**inputs)                   # checks inputs (InputError), casts them, calls fn
    backend.sharded(mesh).compile(...)  # over a jax.sharding.Mesh: see `isoform.backends.jax_mesh`

Inputs are NumPy or jax arrays (nested lists work, but each list structure traces anew). They are
checked (`InputError`) and cast to their declared dtypes inside the traced function, so each new
input signature is checked once, when jax traces it, and a call that hits jax's jit cache costs no
Python beyond jax's own dispatch.
Symbolic dims are static Python ints read off the traced shapes (`program.compile_count` counts
traces; `program.warmup(**inputs)` compiles ahead of time).

Integers: JAX is used with its default `jax_enable_x64=False`, which isoform never changes, so i64
graph values (indices, token ids, argmax/top_k results) are int32 inside JAX, and i64 outputs come
back as int32 jax arrays (int64 if the user enabled x64). Inputs declared i64 may be int64 NumPy
arrays; they are cast on the way in. `numpy_params()` returns parameters in their declared dtypes.

Every composite is lowered natively: softmax, log_softmax, sigmoid and silu with `jax.nn`; gelu,
layer_norm, rms_norm and attention as short jnp code that XLA fuses (see `_attention` for why not
`jax.nn.dot_product_attention`). Half precision follows `OpDef.half` (`base.Casts`): "upcast" ops
given f16/bf16 values compute in f32 and round once, like the NumPy references.
"""

from __future__ import annotations

import copy
import functools
import math
import mmap
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import BackendError
from ..ir import Graph, Value
from ..ir.dtypes import DType
from .base import Backend, Casts, Program, check_inputs, check_params, generate


def jax_dtype(dtype: DType) -> np.dtype:
    """The dtype JAX uses for an IR dtype (i64 is int32 unless x64 is enabled)."""
    return jax.dtypes.canonicalize_dtype(dtype.numpy)


_CASTS = Casts(jax_dtype, (jnp.float16, jnp.bfloat16), jnp.float32, lambda x, dt: x.astype(dt))


class JaxBackend(Backend):
    name = "jax"
    framework = "jax"
    static_shapes = True
    extra = "jax"

    layout: Any = None  # a `jax_mesh.MeshLayout` on a `sharded` backend

    def compile(self, graph: Graph, params: Mapping[str, Any]) -> JaxProgram:
        check_params(self.name, graph, params)
        if self.layout is not None:
            from .jax_mesh import ShardedJaxProgram

            return ShardedJaxProgram(self, graph, params)
        return JaxProgram(self, graph, params)

    def sharded(self, mesh: jax.sharding.Mesh, axis_names: Mapping[str, str] | None = None) -> JaxBackend:
        """This backend over the devices of ``mesh``: parameters split by the graph's sharding annotations,
        batches over its ``"data"`` axis (``axis_names`` maps the logical ``"data"``/``"model"`` axes to
        other mesh axis names); see `isoform.backends.jax_mesh`. BackendError for a bad mesh or mapping."""
        from .jax_mesh import MeshLayout

        placed = copy.copy(self)
        placed.device, placed.layout = None, MeshLayout(mesh, axis_names)
        return placed

    def on(self, device: Any) -> JaxBackend:
        """This backend with parameters on ``device`` (a `jax.Device`, or ``"cpu"``, ``"gpu:1"``, ``"tpu"``:
        platform and index), where jit then runs; BackendError naming the device if jax has no such one."""
        if device is None:
            return self
        where = device
        if isinstance(device, str):
            platform, _, index = device.partition(":")
            try:
                where = jax.devices(platform)[int(index or 0)]
            except (RuntimeError, ValueError, IndexError) as e:
                raise BackendError(f"device {device!r} is not available to backend 'jax': {e or 'no such index'}") from None
        if not isinstance(where, jax.Device):
            raise BackendError(f"backend 'jax' takes a jax.Device or a name such as 'cpu' or 'gpu:0' as device, "
                               f"got {device!r}")
        placed = copy.copy(self)
        placed.device = where
        return placed

    def param_to_native(self, param: Value, array: Any) -> jax.Array:
        if self.layout is not None:
            return self.layout.place(array, jax_dtype(param.dtype), param)
        return self.to_native(array, param.dtype)

    def to_native(self, array: Any, dtype: DType) -> jax.Array:
        if self.layout is not None:  # replicated over the mesh
            return self.layout.place(array, jax_dtype(dtype), None)
        if isinstance(array, np.ndarray):
            # jax.device_put adopts a 64-byte-aligned host buffer on CPU: one synchronous copy into
            # such a buffer (jnp.asarray would copy again, later, and fragment the heap while loading)
            return jax.device_put(_aligned(array, jax_dtype(dtype)), self.device)
        x = jnp.asarray(array, dtype=jax_dtype(dtype))
        return x if self.device is None else jax.device_put(x, self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)


class JaxProgram(Program):
    """A graph compiled to a jitted JAX function; see the module docstring."""

    def __init__(self, backend: JaxBackend, graph: Graph, params: Mapping[str, Any]):
        super().__init__(backend, graph)
        self.params: dict[str, jax.Array] = {p.name: backend.param_to_native(p, params[p.name]) for p in graph.params}
        self.compile_count = 0
        self.fn: Callable[[Mapping[str, jax.Array], Mapping[str, Any]], dict[str, jax.Array]] = self._jit(
            self._traced(backend.prepare(graph)))
        self._training_fn: Callable[..., dict[str, jax.Array]] | None = None

    def _traced(self, prepared: Graph, overrides: Mapping[int, Callable[..., Any]] | None = None
                ) -> Callable[[Mapping[str, jax.Array], Mapping[str, Any]], dict[str, jax.Array]]:
        graph, run = self.graph, generate(prepared, self.backend.lowerings, casts=_CASTS, overrides=overrides)
        dtypes = [(v.name, jax_dtype(v.dtype)) for v in graph.inputs]

        def traced(params: Mapping[str, jax.Array], inputs: Mapping[str, Any]) -> dict[str, jax.Array]:
            # Runs once per new input signature (names, shapes, dtypes), which is exactly what
            # check_inputs depends on: a wrong input raises InputError here, before any compute,
            # and calls that hit jax's cache were already checked.
            inputs = {k: jnp.asarray(x) for k, x in inputs.items()}
            env = check_inputs(graph, inputs, jnp.shape, _dtype_of)
            self.compile_count += 1
            return run(params, {name: inputs[name].astype(dt) for name, dt in dtypes}, env)

        return traced

    @property
    def training_fn(self) -> Callable[[Mapping[str, jax.Array], Mapping[str, Any], jax.Array], dict[str, jax.Array]]:
        """``fn`` of the training program: ``training_fn(params, inputs, rng)`` applies dropout with
        ``jax.random`` bits from the key ``rng`` (each dropout node folds its index into it), pure and
        jitted like ``fn``; equal to ``fn`` where the graph has no dropout."""
        if self._training_fn is None:
            prepared = self.backend.prepare(self.graph, training=True)
            key: list[jax.Array] = []  # the traced key, set by `keyed` while jax traces it
            overrides = {i: functools.partial(_dropout, key=key, salt=i)
                         for i, node in enumerate(prepared.nodes) if node.op == "dropout"}
            traced = self._traced(prepared, overrides)

            def keyed(params: Mapping[str, jax.Array], inputs: Mapping[str, Any], rng: jax.Array) -> dict[str, jax.Array]:
                key[:] = [rng]
                return traced(params, inputs)

            self._training_fn = self._jit(keyed, keyed=True)
        return self._training_fn

    def _jit(self, traced: Callable[..., Any], keyed: bool = False) -> Callable[..., Any]:
        """jax.jit of ``traced(params, inputs)`` (``keyed``: ``traced(params, inputs, rng)``)."""
        return jax.jit(traced)

    def __call__(self, **inputs: Any) -> dict[str, jax.Array]:
        return self.fn(self.params, inputs)

    training = False  # set by `train`; dropout applies in `training_fn` (given a key: `isoform.Model.apply`)

    def train(self, mode: bool = True) -> None:
        self.training = mode

    def warmup(self, **example_inputs: Any) -> float:
        """Trace and compile for the shapes of `example_inputs` (arrays, or `jax.ShapeDtypeStruct`s
        standing for zeros) with one call, so later calls with those shapes run without compiling.
        Returns the seconds it took."""
        inputs = {k: np.zeros(x.shape, x.dtype) if isinstance(x, jax.ShapeDtypeStruct) else x
                  for k, x in example_inputs.items()}
        start = time.perf_counter()
        jax.block_until_ready(self.fn(self.params, inputs))
        return time.perf_counter() - start

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {p.name: np.asarray(self.params[p.name]).astype(p.dtype.numpy, copy=False) for p in self.graph.params}


def _dtype_of(x: Any) -> np.dtype:
    return x.dtype


def _aligned(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A copy of `a` as `dtype` in a new 64-byte-aligned buffer (large ones in their own anonymous
    mapping, which goes back to the OS when freed rather than fragmenting the heap)."""
    nbytes = a.size * dtype.itemsize
    buf = np.frombuffer(mmap.mmap(-1, nbytes), np.uint8) if nbytes >= 1 << 20 else np.empty(nbytes + 64, np.uint8)
    start = -buf.ctypes.data % 64
    out = buf[start:start + nbytes].view(dtype).reshape(a.shape)
    np.copyto(out, a, casting="unsafe")
    return out


backend = JaxBackend()
lower = backend.lower


# -- elementwise --------------------------------------------------------------------------------------
for _op, _f in {"neg": jnp.negative, "abs": jnp.abs, "exp": jnp.exp, "log": jnp.log, "sqrt": jnp.sqrt,
                "rsqrt": lax.rsqrt, "tanh": jnp.tanh, "erf": lax.erf, "sin": jnp.sin, "cos": jnp.cos,
                "floor": jnp.floor, "logical_not": jnp.logical_not,
                "add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply, "div": jnp.divide, "pow": jnp.power,
                "maximum": jnp.maximum, "minimum": jnp.minimum, "eq": jnp.equal, "ne": jnp.not_equal,
                "lt": jnp.less, "le": jnp.less_equal, "gt": jnp.greater, "ge": jnp.greater_equal,
                "logical_and": jnp.logical_and, "logical_or": jnp.logical_or, "where": jnp.where}.items():
    lower(_op)(_f)


def _dropout(x, *, rate: float, key: list[jax.Array], salt: int):
    """Dropout in a training program (`JaxProgram.training_fn`) from the traced key and the node's index."""
    keep = jax.random.bernoulli(jax.random.fold_in(key[0], salt), 1.0 - rate, x.shape)
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


@lower("dropout")
def _keyless_dropout(x, *, rate: float):
    raise BackendError("dropout on jax needs a PRNG key: it runs in JaxProgram.training_fn(params, inputs, rng) "
                       "(isoform.Model.apply(params, rng=key, ...)), where each node gets its share of the key")


@lower("cast")
def _cast(x, *, dtype: DType):
    return x.astype(jax_dtype(dtype))  # XLA's float -> int convert truncates toward zero


@lower("constant")
def _constant(*, value, dtype: DType):
    return jnp.asarray(np.asarray(value).astype(dtype.numpy), dtype=jax_dtype(dtype))


@lower("iota")
def _iota(*, shape, axis: int, dtype: DType):
    return lax.broadcasted_iota(jax_dtype(dtype), tuple(shape), axis % len(shape))


# -- reductions and scans -------------------------------------------------------------------------
def _reduction(f: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    return lambda x, *, axes, keepdims: f(x, axis=tuple(axes), keepdims=keepdims).astype(x.dtype)


lower("reduce_sum")(_reduction(jnp.sum))
lower("reduce_mean")(_reduction(jnp.mean))
lower("reduce_max")(_reduction(jnp.max))
lower("reduce_min")(_reduction(jnp.min))


@lower("argmax")
def _argmax(x, *, axis: int, keepdims: bool):
    return jnp.argmax(x, axis=axis, keepdims=keepdims).astype(jax_dtype(DType.i64))


@lower("cumsum")
def _cumsum(x, *, axis: int, exclusive: bool, reverse: bool):
    out = lax.cumsum(x, axis % x.ndim, reverse=reverse)
    return out - x if exclusive else out


@lower("top_k")
def _top_k(x, *, k: int):
    values, indices = lax.top_k(x, k)  # stable: lower index first on ties
    return values, indices.astype(jax_dtype(DType.i64))


# -- shapes and indexing ----------------------------------------------------------------------------
lower("reshape")(lambda x, *, shape: jnp.reshape(x, tuple(shape)))
lower("transpose")(lambda x, *, perm: jnp.transpose(x, perm))
lower("broadcast_to")(lambda x, *, shape: jnp.broadcast_to(x, tuple(shape)))
lower("concat")(lambda *xs, axis: jnp.concatenate(xs, axis=axis))


@lower("slice")
def _slice(x, *, axes, starts, stops, steps):
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, stops, steps):
        index[a] = slice(s, e, st)
    return x[tuple(index)]


@lower("gather")
def _gather(x, idx, *, axis: int):
    return jnp.take(x, idx, axis=axis, mode="wrap")  # negative indices count from the end, as in NumPy


@lower("pad")
def _pad(x, *, pads, value: float):
    return lax.pad(x, jnp.asarray(value, dtype=x.dtype), [(lo, hi, 0) for lo, hi in pads])


# negative starts clamp to 0 (the spec), rather than counting from the end as lax does by default
lower("dynamic_slice")(lambda x, *starts, sizes: lax.dynamic_slice(x, starts, tuple(sizes), allow_negative_indices=False))
lower("dynamic_update_slice")(
    lambda x, update, *starts: lax.dynamic_update_slice(x, update, starts, allow_negative_indices=False))


# -- contractions -------------------------------------------------------------------------------------
lower("matmul")(jnp.matmul)


@lower("conv")
def _conv(x, w, *, stride, padding, dilation, groups: int):
    return lax.conv_general_dilated(  # default dimension numbers are NC*, OI*, NC* (PyTorch's layout)
        x, w, tuple(stride), [tuple(p) for p in padding], rhs_dilation=tuple(dilation), feature_group_count=groups)


# -- composites ----------------------------------------------------------------------------------
lower("softmax")(lambda x, *, axis: jax.nn.softmax(x, axis=axis))
lower("log_softmax")(lambda x, *, axis: jax.nn.log_softmax(x, axis=axis))
lower("sigmoid")(jax.nn.sigmoid)
lower("silu")(jax.nn.silu)


@lower("gelu")
def _gelu(x, *, approximate: str):
    # jax.nn.gelu's exact form uses erfc, which XLA's CPU backend runs ~4x slower than erf
    if approximate == "tanh":
        return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1.0 + lax.erf(x * (1.0 / math.sqrt(2.0))))


@lower("layer_norm")
def _layer_norm(x, weight=None, bias=None, *, eps: float):
    centered = x - jnp.mean(x, axis=-1, keepdims=True)
    y = centered * lax.rsqrt(jnp.mean(centered * centered, axis=-1, keepdims=True) + eps)
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


@lower("rms_norm")
def _rms_norm(x, weight=None, *, eps: float):
    y = x * lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)
    return y if weight is None else y * weight


@lower("attention")
def _attention(q, k, v, mask=None, *, scale, causal: bool):
    """Attention in the graph's [B, H, S, D] layout. Grouped query heads are folded into the rows of
    their key/value head (a free reshape, no repeat of K/V). On CPU this is ~1.5x faster than
    jax.nn.dot_product_attention, whose [B, T, N, H] layout costs transposes, and it keeps the
    reference's masking exactly: masked scores become the lowest finite value."""
    b, hq, sq, d = q.shape
    hk, sk = k.shape[1], k.shape[2]
    s = jnp.matmul(q.reshape(b, hk, -1, d), jnp.swapaxes(k, -1, -2)).reshape(b, hq, sq, sk)
    s = s * jnp.asarray(1.0 / math.sqrt(d) if scale is None else scale, s.dtype)
    low = jnp.finfo(s.dtype).min
    if mask is not None:
        s = jnp.where(mask, s, low) if mask.dtype == jnp.bool_ else s + mask
    if causal:
        s = jnp.where(jnp.tril(jnp.ones((sq, sk), jnp.bool_)), s, low)
    p = jax.nn.softmax(s, axis=-1)
    return jnp.matmul(p.reshape(b, hk, -1, sk), v).reshape(b, hq, sq, v.shape[-1])
