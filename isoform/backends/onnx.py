"""Export an IR graph to ONNX (only the `onnx` package is needed).

    model = to_model(graph, params)                       # an onnx.ModelProto, not written anywhere
    export_onnx(graph, params, "model.onnx", opset=23)    # checked with the full checker, then written

This module is the model: the opset (`default_opset`), inputs and outputs (symbolic dims become named
dynamic axes), parameters as initializers, metadata, the checker and the file (weights over 1 GB as
external data). Each node is lowered to ONNX operators by `onnx_ops.py`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import BackendError
from ..ir import Graph, decompose
from ..ir import dims as D
from ..ir.dtypes import DType
from .onnx_ctx import ONNX_TYPE, Ctx, V
from .onnx_ops import LOWERINGS, MIN_OPSET, ONNX_OPS, OPSET_NEEDED, emit, lowerable

#: Models with more initializer bytes than this are written with external data (protobuf's 2 GB limit).
EXTERNAL_DATA_BYTES = 1 << 30
_OPEN = 2**31 - 1  # the end of an open-ended ONNX Runtime kernel version range


# -- the opset ------------------------------------------------------------------------------------
def default_opset() -> int:
    """The newest opset both `onnx` and (if installed) ONNX Runtime's CPU kernels support."""
    newest = onnx.defs.onnx_opset_version()
    if importlib.util.find_spec("onnxruntime") is None:
        return newest
    return min(newest, supported_opset())


@functools.cache
def supported_opset() -> int:
    """The newest opset at which every operator of `ONNX_OPS` (that exists at that opset) runs on an
    ONNX Runtime CPU kernel rather than being inlined from its ONNX function body. Uses ORT's own
    schema and kernel registries and its matching rule: an open-ended kernel serves only the schema
    version it was registered for (so e.g. ORT 1.32 runs `Attention` natively up to opset 24)."""
    from onnxruntime.capi import _pybind_state as C

    if not hasattr(C, "get_all_opkernel_def"):  # a build without the registry API
        return min(onnx.defs.onnx_opset_version(), max(OPSET_NEEDED.values()))
    onnx_domain = ("", "ai.onnx")
    ranges: dict[str, list[tuple[int, int]]] = {}
    for k in C.get_all_opkernel_def():
        if k.domain in onnx_domain and k.provider == "CPUExecutionProvider":
            ranges.setdefault(k.op_name, []).append(tuple(k.version_range))
    versions: dict[str, list[int]] = {}
    for schema in C.get_all_operator_schema():
        if schema.domain in onnx_domain:
            versions.setdefault(schema.name, []).append(schema.since_version)

    def runs(op: str, opset: int) -> bool:
        since = max((v for v in versions.get(op, []) if v <= opset), default=None)
        return since is None or any(lo == since or lo < since <= hi < _OPEN for lo, hi in ranges.get(op, []))

    newest = min(onnx.defs.onnx_opset_version(), max(v for vs in versions.values() for v in vs))
    return next((opset for opset in range(newest, MIN_OPSET, -1)
                 if all(runs(op, opset) for op in ONNX_OPS)), MIN_OPSET)


def _check_opset(opset: int) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise BackendError(f"cannot export to ONNX opset {opset}: isoform exports opsets {MIN_OPSET}..{newest} "
                           f"(the installed onnx {onnx.__version__} knows up to {newest})")


# -- the model ------------------------------------------------------------------------------------
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
        emit(ctx, node, values)
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
