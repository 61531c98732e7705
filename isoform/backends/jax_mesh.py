"""Scale-out on JAX's own engine: a graph's sharding annotations (`isoform.ir.graph.Sharding`) as
`jax.sharding.NamedSharding`s over a device mesh; GSPMD partitions the computation.

    mesh = jax.sharding.Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    m = isoform.Model.load("./llama", backend="jax", mesh=mesh)
    be = isoform.backends.get("jax").sharded(mesh, axis_names={"data": "dp", "model": "tp"})  # other names

Logical axes: ``"model"`` (tensor parallel: column-/row-parallel projections, vocab-parallel embeddings
and LM heads, KV caches over heads; see `isoform.layers.linear.SHARDINGS`) and ``"data"`` (data
parallel: every input dim named ``batch``). ``axis_names`` maps them to the mesh's axis names (default:
the same names). A logical axis the mesh lacks, and a dim that the size of its mesh axis does not
divide, are replicated instead (GPT-2's vocabulary of 50257 on 4 devices: the embedding is replicated,
every projection still split; a batch of 3 on 2 data shards: the inputs are replicated).

Parameters are created shard by shard from the checkpoint (`jax.make_array_from_callback`: each device
gets a copy of its slice of the memory-mapped tensor, no device ever holds a whole sharded parameter; on
a multi-host slice each host reads only its own devices' shards). The jitted function takes the
parameters with their shardings (``in_shardings``); inputs are placed per call, as their shapes decide
what divides; the outputs' layouts are GSPMD's propagation (the updated KV caches stay split over heads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..errors import BackendError
from ..ir import Graph, Value
from .jax import JaxProgram

LOGICAL_AXES = ("data", "model")


class MeshLayout:
    """Where values go on ``mesh``: logical axes mapped to mesh axes by ``axis_names``."""

    def __init__(self, mesh: Mesh, axis_names: Mapping[str, str] | None = None):
        if not isinstance(mesh, Mesh):
            raise BackendError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
        given = dict(axis_names or {})
        unknown = sorted(set(given) - set(LOGICAL_AXES))
        missing = sorted(a for a in given.values() if a not in mesh.axis_names)
        if unknown or missing:
            raise BackendError(f"axis_names maps the logical axes {list(LOGICAL_AXES)} to axes of the mesh "
                               f"{tuple(mesh.axis_names)}; got unknown logical axes {unknown}, unknown mesh axes {missing}")
        names = {a: given.get(a, a) for a in LOGICAL_AXES}
        self.axes = {a: m for a, m in names.items() if m in mesh.axis_names}
        if not self.axes:
            raise BackendError(f"the mesh's axes {tuple(mesh.axis_names)} include neither 'data' nor 'model': name "
                               "them so, or pass axis_names={'model': ..., 'data': ...}")
        if len(set(self.axes.values())) != len(self.axes):
            raise BackendError(f"axis_names maps 'data' and 'model' to the same mesh axis: {self.axes}")
        self.mesh = mesh

    def sharding(self, value: Value | None, shape: tuple[int, ...]) -> NamedSharding:
        """The layout of ``value`` (a graph input or parameter; None: replicated) at concrete ``shape``:
        its annotation, plus ``"data"`` on dims named ``batch``; non-dividing dims replicated."""
        if value is None or len(shape) != len(value.shape):
            return NamedSharding(self.mesh, PartitionSpec())
        logical = list(value.sharding or (None,) * len(shape))
        if "data" not in logical:
            logical = ["data" if d == "batch" and a is None else a for d, a in zip(value.shape, logical, strict=True)]
        axes = [self.axes.get(a) if a else None for a in logical]
        return NamedSharding(self.mesh, PartitionSpec(
            *(m if m is not None and n % self.mesh.shape[m] == 0 else None for m, n in zip(axes, shape, strict=True))))

    def place(self, array: Any, dtype: np.dtype, value: Value | None) -> jax.Array:
        """``array`` (NumPy, possibly a view of a mapped file, or a jax array) as a ``dtype`` jax array laid
        out for ``value``; NumPy arrays are copied shard by shard, never whole onto one device."""
        shape = tuple(np.shape(array))
        target = self.sharding(value, shape)
        if isinstance(array, jax.Array):
            return jax.device_put(array if array.dtype == dtype else array.astype(dtype), target)
        array = np.asarray(array)
        return jax.make_array_from_callback(shape, target, lambda index: np.array(array[index], dtype=dtype))


class ShardedJaxProgram(JaxProgram):
    """A `JaxProgram` over a mesh: parameters sharded by their annotations, inputs placed per call.
    ``fn`` takes parameters laid out as ``params`` are (its ``in_shardings``: NumPy ones are split on
    the way in, jax arrays committed to another layout are jax's ValueError), as ``jax.grad`` and
    optax updates of ``params`` keep them."""

    def __init__(self, backend: Any, graph: Graph, params: Mapping[str, Any]):
        self.layout: MeshLayout = backend.layout
        self._values = {v.name: v for v in graph.inputs}
        super().__init__(backend, graph, params)

    def _jit(self, traced: Callable[..., Any], keyed: bool = False) -> Callable[..., Any]:
        shardings = {name: x.sharding for name, x in self.params.items()}
        return jax.jit(traced, in_shardings=(shardings, None, None) if keyed else (shardings, None))

    def place_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Inputs on the mesh: batch dims over ``data`` and annotated dims (KV-cache heads over ``model``)
        where they divide; anything else replicated (a wrong input still fails the graph's checks)."""
        placed = {}
        for name, x in inputs.items():
            x = x if isinstance(x, jax.Array | np.ndarray) else np.asarray(x)
            placed[name] = jax.device_put(x, self.layout.sharding(self._values.get(name), tuple(np.shape(x))))
        return placed

    def __call__(self, **inputs: Any) -> dict[str, jax.Array]:
        return self.fn(self.params, self.place_inputs(inputs))

    def warmup(self, **example_inputs: Any) -> float:
        inputs = {k: np.zeros(x.shape, x.dtype) if isinstance(x, jax.ShapeDtypeStruct) else x
                  for k, x in example_inputs.items()}
        return super().warmup(**self.place_inputs(inputs))


__all__ = ["MeshLayout", "ShardedJaxProgram"]
