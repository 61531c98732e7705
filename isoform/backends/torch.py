"""The PyTorch backend: a graph becomes a `torch.nn.Module` whose forward is a straight-line function
of eager torch ops (generated once by `base.generate`), with native kernels for the composites
(`attention` -> `F.scaled_dot_product_attention`, layer_norm, rms_norm, gelu, softmax, log_softmax, ...).

    program = isoform.backends.get("torch").compile(graph, params)
    out = program(input_ids=ids)            # numpy or torch inputs; runs under torch.inference_mode()
    module = program.module                 # == program.params, an nn.Module
    loss = module(input_ids=ids)["logits"].sum()   # module(...) records autograd as usual
    torch.optim.SGD(module.parameters(), lr=0.1)   # named_parameters(): the graph's dotted names
    module.to("cuda"); module.half()        # numpy inputs, constants and casts follow the move

Parameters are nested submodules split at the dots of their graph names, so `state_dict()` and
`load_state_dict()` use the graph's names; float parameters are `nn.Parameter`s, integer/bool ones
buffers. `program(...)` skips autograd (inference tensors, the fast path); to train through it, call
`program.train()` (`program.train(False)`: ordinary tensors under `no_grad`, as `isoform.Model` runs in eval
mode) or `program.module(...)`. After `module.to(dtype)` the graph's
declared float dtype maps to the new one (inputs, constants, iota and casts): `module.half()` runs
the graph on f16 values ("upcast" ops in f32, see `OpDef.half`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import ml_dtypes
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BackendError
from ..ir import Graph, all_ops
from ..ir.dtypes import DType, as_dtype
from .base import (
    TRAINING_ONLY,
    Backend,
    Casts,
    Program,
    check_inputs,
    check_params,
    generate,
    matmul_bias_pairs,
)

TORCH = {DType.f32: torch.float32, DType.f16: torch.float16, DType.bf16: torch.bfloat16,
         DType.i32: torch.int32, DType.i64: torch.int64, DType.bool: torch.bool}
_BF16 = np.dtype(ml_dtypes.bfloat16)
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16, torch.bfloat16: _BF16,
          torch.int8: np.int8, torch.int16: np.int16, torch.int32: np.int32, torch.int64: np.int64,
          torch.uint8: np.uint8, torch.bool: np.bool_, torch.complex64: np.complex64}
_NUMPY = {k: np.dtype(v) for k, v in _NUMPY.items()}


def _from_numpy(a: np.ndarray, copy: bool = False) -> torch.Tensor:
    """A CPU tensor sharing `a`'s memory when it is writable and C-contiguous (bf16 via a uint16 view)."""
    if copy or not (a.flags.writeable and a.flags.c_contiguous):
        a = a.copy()
    if a.dtype == _BF16:
        return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(a)


class TorchBackend(Backend):
    name = "torch"
    framework = "torch"
    extra = "torch"

    def compile(self, graph: Graph, params: Mapping[str, Any]) -> TorchProgram:
        """An nn.Module for `graph` holding `params` (numpy arrays are copied; torch tensors of the
        declared dtype are shared, not copied), wrapped in a TorchProgram."""
        check_params(self.name, graph, params)
        prepared = self.prepare(graph)
        tensors = {p.name: self.to_native(params[p.name], p.dtype) for p in graph.params}
        return TorchProgram(self, graph, GraphModule(self, graph, prepared, tensors))

    def on(self, device: Any) -> TorchBackend:
        """This backend with parameters on ``device`` (``"cuda"``, ``"cuda:1"``, a `torch.device`; the CPU
        is the default); BackendError naming the device if torch cannot allocate there."""
        if device is None:
            return self
        try:
            where = torch.device(device)
            torch.empty(0, device=where)  # raises without the device (no CUDA build, no GPU, bad index)
        except (RuntimeError, AssertionError, TypeError, ValueError) as e:
            raise BackendError(f"device {device!r} is not available to backend 'torch': {e}") from None
        if where == torch.device("cpu"):
            return self
        placed = copy.copy(self)
        placed.device = where
        return placed

    def to_native(self, array: Any, dtype: DType | str) -> torch.Tensor:
        """A tensor of `dtype` (an `nn.Parameter` for float dtypes) holding `array`, on `device`."""
        want = TORCH[as_dtype(dtype)]
        if isinstance(array, torch.Tensor):
            t = array.detach().to(dtype=want, device=self.device)
        else:
            a = np.asarray(array)
            t = _from_numpy(a, copy=self.device is None and a.dtype == as_dtype(dtype).numpy).to(dtype=want, device=self.device)
        return nn.Parameter(t) if t.is_floating_point() else t

    def to_numpy(self, x: Any) -> np.ndarray:
        if not isinstance(x, torch.Tensor):
            return np.asarray(x)
        if x.dtype == torch.bfloat16:
            return x.detach().cpu().view(torch.int16).numpy().view(_BF16)
        return x.numpy(force=True)


class _Live:
    """Parameter lookup for the generated function: name -> the tensor its owner module holds now,
    so `.to()`, `load_state_dict(assign=True)` and `torch.func.functional_call` are always seen."""

    __slots__ = ("where",)

    def __init__(self, where: dict[str, tuple[dict, str]]):
        self.where = where

    def __getitem__(self, name: str) -> torch.Tensor:
        store, leaf = self.where[name]
        return store[leaf]


class GraphModule(nn.Module):
    """An IR graph as an nn.Module: `module(**inputs)` validates the inputs and returns a dict of
    output tensors, recording autograd when grad mode is on."""

    def __init__(self, backend: TorchBackend, graph: Graph, prepared: Graph, tensors: Mapping[str, torch.Tensor]):
        super().__init__()
        where = {}
        for name, t in tensors.items():
            owner, *path, leaf = [self, *name.split(".")]
            try:
                for part in path:
                    if part not in owner._modules:
                        owner.add_module(part, nn.Module())
                    owner = owner._modules[part]
                register = owner.register_parameter if isinstance(t, nn.Parameter) else owner.register_buffer
                register(leaf, t)
            except (KeyError, TypeError) as e:
                raise BackendError(f"parameter name {name!r} cannot be laid out as nested nn.Modules: {e}") from None
            where[name] = (owner._parameters if isinstance(t, nn.Parameter) else owner._buffers, leaf)
        self._params = _Live(where)
        self._backend, self._graph, self._prepared = backend, graph, prepared
        self._names = {v.name for v in graph.inputs}
        self._order = [v.name for v in graph.inputs]
        self._declared = next((p.dtype for p in graph.params if p.dtype.is_float), None)
        self._envs: dict[tuple, tuple[dict[str, int], bool]] = {}
        self._consts: dict[tuple, torch.Tensor] = {}
        self._dropout = any(n.op in TRAINING_ONLY for n in graph.nodes)  # a training program differs
        self._moved()

    def extra_repr(self) -> str:
        return f"graph={self._graph.name!r}"

    def forward(self, **inputs: Any) -> dict[str, torch.Tensor]:
        return self._call(inputs, training=self.training)

    def _runner(self, prepared: Graph) -> Callable[..., dict[str, torch.Tensor]]:
        dt = self._dtypes
        casts = Casts(dt.__getitem__, (torch.float16, torch.bfloat16), torch.float32, torch.Tensor.to)
        return generate(prepared, {
            **self._backend.lowerings,
            "cast": lambda x, *, dtype: x.to(dt[dtype]),
            "constant": lambda *, value, dtype: self._constant(value, dt[dtype]),
            "iota": lambda *, shape, axis, dtype: _iota(shape, axis, dt[dtype], self._device),
        }, casts=casts, overrides=_fused_linears(prepared, casts))

    def _apply(self, fn: Any, recurse: bool = True) -> GraphModule:
        out = super()._apply(fn, recurse)
        self._moved()
        return out

    def _moved(self) -> None:
        """(Re)bind to the current device and float dtype of the parameters."""
        first = next(iter([*self.parameters(), *self.buffers()]), None)
        self._device = first.device if first is not None else self._backend.device or torch.device("cpu")
        current = next((p.dtype for p in self.parameters() if p.is_floating_point()), None)
        dt = dict(TORCH)
        if self._declared is not None and current is not None:
            dt[self._declared] = current
        self._consts.clear()
        self._envs.clear()
        self._inputs = [(v.name, dt[v.dtype]) for v in self._graph.inputs]
        self._dtypes = dt
        self._run = self._runner(self._prepared)
        self._train_run = None  # the training program (dropout applied), generated on first use

    def _constant(self, value: Any, dtype: torch.dtype) -> torch.Tensor:
        key = (id(value), dtype)  # `value` is the node's attribute object: stable for the graph's life
        t = self._consts.get(key)
        if t is None:
            with torch.inference_mode(False):  # usable by later autograd calls too
                t = self._consts[key] = torch.from_numpy(np.array(value)).to(self._device, dtype)
        return t

    def _call(self, inputs: Mapping[str, Any], training: bool = False) -> dict[str, torch.Tensor]:
        """The outputs for ``inputs``; ``training``: with dropout (the graph's training program)."""
        try:  # fast path: torch inputs of shapes/dtypes seen before
            key = tuple([(x.shape, x.dtype) if isinstance(x := inputs[n], torch.Tensor) else None for n in self._order])
        except KeyError:
            key = None
        hit = self._envs.get(key) if len(inputs) == len(self._order) else None
        if hit is None:
            inputs, hit = self._admit(inputs)
        env, cast = hit
        if cast:
            inputs = {n: inputs[n].to(want) for n, want in self._inputs}
        run = self._run
        if training and self._dropout:
            if self._train_run is None:
                self._train_run = self._runner(self._backend.prepare(self._graph, training=True))
            run = self._train_run
        return run(self._params, inputs, env)

    def _admit(self, inputs: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], tuple[dict[str, int], bool]]:
        """Convert non-torch inputs (onto the parameters' device) and check them against the graph,
        once per distinct input shapes/dtypes; InputError before any compute."""
        if inputs.keys() != self._names:
            check_inputs(self._graph, inputs, np.shape, lambda x: np.asarray(x).dtype)  # raises
        xs = {n: x if isinstance(x, torch.Tensor) else _from_numpy(np.asarray(x)).to(self._device)
              for n, x in inputs.items()}
        key = tuple([(xs[n].shape, xs[n].dtype) for n in self._order])
        hit = self._envs.get(key)
        if hit is None:
            env = check_inputs(self._graph, xs, lambda x: x.shape, lambda x: _NUMPY.get(x.dtype, np.dtype("O")))
            if len(self._envs) > 256:
                self._envs.clear()
            hit = self._envs[key] = (env, any(xs[n].dtype != want for n, want in self._inputs))
        return xs, hit


def _fused_linears(graph: Graph, casts: Casts) -> dict[int, Any]:
    """Node lowerings running each matmul + bias add (`base.matmul_bias_pairs`) as one `torch.addmm`,
    which adds the bias inside the GEMM rather than in another pass over its output (measured on
    torch 2.13 CPU, 2 threads, x [8,128,768]: 768->768 linear 32 -> 24 ms, 768->3072 73 -> 66 ms)."""
    fused: dict[int, Any] = {}
    for i, j, k in matmul_bias_pairs(graph, casts):
        fused[i] = lambda x, w: (x, w)  # deferred to its only use, the add
        fused[j] = _addmm if k == 1 else lambda bias, xw: _addmm(xw, bias)
    return fused


def _addmm(xw: tuple[torch.Tensor, torch.Tensor], bias: torch.Tensor) -> torch.Tensor:
    x, w = xw
    return torch.addmm(bias, x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[-1])


class TorchProgram(Program):
    """A compiled graph on torch. `program(**inputs)` runs under `torch.inference_mode()` unless
    `program.inference_mode` is False: then it records autograd (under grad mode) if the module is in
    training mode, else runs under `torch.no_grad()` (ordinary tensors, usable by later autograd code).
    `program.module` (also `program.params`) is the nn.Module. `train(mode)` sets both, the rule
    `isoform.Model` follows."""

    inference_mode: bool = True

    def __init__(self, backend: TorchBackend, graph: Graph, module: GraphModule):
        super().__init__(backend, graph)
        self.module = self.params = module

    @property
    def training(self) -> bool:
        return self.module.training

    def train(self, mode: bool = True) -> None:
        """Leave the inference-mode path: record autograd (``mode``) or run under ``no_grad``."""
        self.inference_mode = False
        self.module.train(mode)

    def __call__(self, **inputs: Any) -> dict[str, torch.Tensor]:
        if self.inference_mode:
            with torch._C._InferenceMode(True):  # what torch.inference_mode() enters, minus ~1us of Python
                return self.module._call(inputs)
        if self.module.training:
            return self.module._call(inputs, training=True)
        with torch.no_grad():
            return self.module._call(inputs)

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {p.name: np.array(self.backend.to_numpy(self.module._params[p.name])) for p in self.graph.params}

    def native_params(self) -> Mapping[str, torch.Tensor]:
        return self.module.state_dict(keep_vars=True)


backend = TorchBackend()
lower = backend.lower

# -- elementwise ------------------------------------------------------------------------------------
for _op, _f in {"neg": torch.neg, "abs": torch.abs, "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
                "rsqrt": torch.rsqrt, "tanh": torch.tanh, "erf": torch.erf, "sin": torch.sin, "cos": torch.cos,
                "floor": torch.floor, "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
                "pow": torch.pow, "maximum": torch.maximum, "minimum": torch.minimum, "eq": torch.eq, "ne": torch.ne,
                "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge, "logical_and": torch.logical_and,
                "logical_or": torch.logical_or, "logical_not": torch.logical_not, "where": torch.where,
                "matmul": torch.matmul, "sigmoid": torch.sigmoid, "silu": F.silu}.items():
    lower(_op)(_f)


@lower("cast")
def _cast(x: torch.Tensor, *, dtype: DType) -> torch.Tensor:
    return x.to(TORCH[dtype])  # float -> int truncates toward zero, like the reference


@lower("constant")
def _constant(*, value: Any, dtype: DType) -> torch.Tensor:
    return torch.from_numpy(all_ops()["constant"].reference(value=value, dtype=dtype))


def _iota(shape: list[int], axis: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    axis %= len(shape)
    r = torch.arange(shape[axis], dtype=dtype, device=device)
    return r.view([-1 if i == axis else 1 for i in range(len(shape))]).expand(*shape)


lower("iota")(lambda *, shape, axis, dtype: _iota(shape, axis, TORCH[dtype], torch.device("cpu")))
lower("dropout")(lambda x, *, rate: F.dropout(x, rate, training=True))  # training programs only (`TRAINING_ONLY`)

# -- reductions and scans ----------------------------------------------------------------------------
for _op, _f in {"reduce_sum": torch.sum, "reduce_mean": torch.mean, "reduce_max": torch.amax,
                "reduce_min": torch.amin}.items():
    def _reduce(x: torch.Tensor, *, axes: list[int], keepdims: bool, _f: Any = _f) -> torch.Tensor:
        if not axes:  # torch reads an empty dim list as "all dims"
            return x
        if _f is torch.sum:  # keep integer dtypes (torch.sum promotes them to i64)
            return _f(x, axes, keepdims, dtype=x.dtype)
        return _f(x, axes, keepdims)

    lower(_op)(_reduce)


@lower("argmax")
def _argmax(x: torch.Tensor, *, axis: int, keepdims: bool) -> torch.Tensor:
    return torch.argmax(x, axis, keepdims)  # first index on ties


@lower("cumsum")
def _cumsum(x: torch.Tensor, *, axis: int, exclusive: bool, reverse: bool) -> torch.Tensor:
    y = x.flip(axis) if reverse else x
    out = torch.cumsum(y, axis, dtype=x.dtype)
    if exclusive:
        out = out - y
    return out.flip(axis) if reverse else out


@lower("top_k")
def _top_k(x: torch.Tensor, *, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    values, idx = torch.topk(x, k)
    # torch.topk orders ties arbitrarily. Only on a tie in or at the edge of the top k (rare in f32
    # logits, common in half precision) redo it with a tie-free key: lower index first, as the reference.
    tie = (x >= values[..., -1:]).sum(-1) > k
    if k > 1:
        tie = tie | (values[..., 1:] == values[..., :-1]).any(-1)
    if not bool(tie.any()):
        return values, idx
    if not x.is_floating_point():
        values, idx = torch.sort(x, dim=-1, descending=True, stable=True)
        return values[..., :k], idx[..., :k]
    bits = (x.float() + 0.0).view(torch.int32)  # + 0.0 makes -0.0 equal to 0.0
    order = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()  # monotonic in the float value
    _, idx = torch.topk((order << 31) - torch.arange(x.shape[-1], device=x.device), k)
    return x.gather(-1, idx), idx


# -- shape and indexing ------------------------------------------------------------------------------
lower("reshape")(lambda x, *, shape: x.reshape(shape))
lower("transpose")(lambda x, *, perm: x.permute(perm))
lower("broadcast_to")(lambda x, *, shape: x.expand(shape))
lower("concat")(lambda *xs, axis: torch.cat(xs, axis))


@lower("slice")
def _slice(x: torch.Tensor, *, axes: list[int], starts: list[int], stops: list[int | None], steps: list[int]) -> torch.Tensor:
    index, flips = [slice(None)] * x.dim(), []
    for a, start, stop, step in zip(axes, starts, stops, steps):
        if step > 0:
            index[a] = slice(start, stop, step)
        else:  # torch has no negative steps: take the same elements ascending, then flip
            r = range(*slice(start, stop, step).indices(x.shape[a]))
            index[a] = slice(r[-1], r[0] + 1, -step) if r else slice(0, 0)
            flips.append(a)
    y = x[tuple(index)]
    return y.flip(flips) if flips else y


@lower("gather")
def _gather(x: torch.Tensor, indices: torch.Tensor, *, axis: int) -> torch.Tensor:
    return x[(slice(None),) * (axis % x.dim()) + (indices,)]  # advanced indexing = np.take, negatives included


@lower("pad")
def _pad(x: torch.Tensor, *, pads: list[list[int]], value: float) -> torch.Tensor:
    if not x.is_floating_point():
        value = bool(value) if x.dtype == torch.bool else int(value)
    return F.pad(x, [p for pair in reversed(pads) for p in pair], value=value)


def _clamped(shape: torch.Size, starts: tuple[torch.Tensor, ...], sizes: Any) -> tuple[slice, ...]:
    out = []
    for s, n, d in zip(starts, sizes, shape):
        s = min(max(int(s), 0), d - int(n))
        out.append(slice(s, s + int(n)))
    return tuple(out)


lower("dynamic_slice")(lambda x, *starts, sizes: x[_clamped(x.shape, starts, sizes)])


@lower("dynamic_update_slice")
def _dynamic_update_slice(x: torch.Tensor, update: torch.Tensor, *starts: torch.Tensor) -> torch.Tensor:
    out = x.clone()  # functional and differentiable: autograd sees a write into a fresh tensor
    out[_clamped(x.shape, starts, update.shape)] = update
    return out


# -- contractions ---------------------------------------------------------------------------------
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@lower("conv")
def _conv(x: torch.Tensor, w: torch.Tensor, *, stride: list[int], padding: list[list[int]], dilation: list[int],
          groups: int) -> torch.Tensor:
    if all(lo == hi for lo, hi in padding):
        pad = [lo for lo, _ in padding]
    else:  # asymmetric: pad explicitly
        x, pad = F.pad(x, [p for pair in reversed(padding) for p in pair]), 0
    return _CONV[x.dim() - 2](x, w, None, stride, pad, dilation, groups)


# -- composites ------------------------------------------------------------------------------------
lower("softmax")(lambda x, *, axis: F.softmax(x, axis))
lower("log_softmax")(lambda x, *, axis: F.log_softmax(x, axis))
lower("gelu")(lambda x, *, approximate: F.gelu(x, approximate=approximate))
lower("layer_norm")(lambda x, weight=None, bias=None, *, eps: F.layer_norm(x, x.shape[-1:], weight, bias, eps))
lower("rms_norm")(lambda x, weight=None, *, eps: F.rms_norm(x, x.shape[-1:], weight, eps))


@lower("attention")
def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
               scale: float | None, causal: bool) -> torch.Tensor:
    """SDPA, masked as in the reference: masked scores get the lowest finite value (rows average)."""
    low = torch.finfo(q.dtype).min
    if causal and mask is not None:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        mask = (mask & keep) if mask.dtype == torch.bool else torch.where(keep, mask, low)
        causal = False
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, low)
    if v.shape[:3] != k.shape[:3]:
        v = v.expand(*k.shape[:3], v.shape[3])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale,
                                          enable_gqa=q.shape[1] != k.shape[1])
