"""The ONNX Runtime backend: a graph is exported to ONNX in memory (see `backends/onnx.py`) and run by
one cached `onnxruntime.InferenceSession` per Program, on the CPU execution provider.

    program = backend.compile(graph, params)
    program(input_ids=ids)              # numpy in (checked, cast to the declared dtypes), numpy out
    program.params                      # {param name: np.ndarray}: the initializers of the session
    program.session                     # the InferenceSession

Sessions use every graph optimization (`ORT_ENABLE_ALL`) and `os.cpu_count()` intra-op threads;
symbolic dims are dynamic axes, so any batch/sequence size runs without re-exporting. The opset is
the newest one at which every operator isoform emits runs on a CPU kernel of the installed
onnxruntime (`backends.onnx.supported_opset`; 24 with onnxruntime 1.32, whose `Attention` kernel stops there).
Parameters are a snapshot: to change them, compile again. bf16 inputs and outputs cross the session
boundary as f32 (exact), since ORT's Python API has no bf16 arrays.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from ..ir import Graph, all_ops
from ..ir.dtypes import DType
from .base import Backend, Program, check_inputs
from .onnx import EXTERNAL_DATA_BYTES, supported_opset, to_model
from .onnx_ops import LOWERINGS, lowerable


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    framework = "onnxruntime"
    extra = "onnx"

    def __init__(self) -> None:
        super().__init__()
        self.opset = supported_opset()
        self.lowerings = {op: LOWERINGS[op] for op in all_ops() if lowerable(op, self.opset)}

    def compile(self, graph: Graph, params: Mapping[str, Any]) -> OnnxRuntimeProgram:
        return OnnxRuntimeProgram(self, graph, params)

    def to_native(self, array: Any, dtype: DType) -> np.ndarray:
        return np.asarray(array).astype(dtype.numpy, copy=False)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)


def session_options() -> ort.SessionOptions:
    """Options of every session: all graph optimizations, one intra-op thread per CPU."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3
    return options


class OnnxRuntimeProgram(Program):
    """A graph exported to ONNX and loaded in an InferenceSession; see the module docstring."""

    def __init__(self, backend: OnnxRuntimeBackend, graph: Graph, params: Mapping[str, Any]):
        super().__init__(backend, graph)
        self.params: dict[str, np.ndarray] = {p.name: backend.to_native(params[p.name], p.dtype) for p in graph.params}
        model = to_model(graph, self.params, opset=backend.opset, f32_io_for_bf16=True)
        self._tmp = None
        if sum(a.nbytes for a in self.params.values()) <= EXTERNAL_DATA_BYTES:
            source: Any = model.SerializeToString()
        else:  # protobuf cannot hold > 2 GB: load from a file with external data
            self._tmp = tempfile.TemporaryDirectory(prefix="isoform-ort-")
            source = os.path.join(self._tmp.name, "model.onnx")
            onnx.save_model(model, source, save_as_external_data=True, location="model.onnx.data")
        self.session = ort.InferenceSession(source, session_options(), providers=["CPUExecutionProvider"])
        self._outputs = list(graph.outputs)
        self._inputs = [(v.name, np.float32 if v.dtype == DType.bf16 else v.dtype.numpy) for v in graph.inputs]
        self._bf16 = [k for k, ref in graph.outputs.items() if graph.values[ref].dtype == DType.bf16]

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        check_inputs(self.graph, arrays, np.shape, lambda x: x.dtype)
        feeds = {name: arrays[name].astype(dt, copy=False) for name, dt in self._inputs}
        out = dict(zip(self._outputs, self.session.run(self._outputs, feeds)))
        for k in self._bf16:
            out[k] = out[k].astype(DType.bf16.numpy)
        return out

    def numpy_params(self) -> dict[str, np.ndarray]:
        return dict(self.params)


backend = OnnxRuntimeBackend()
