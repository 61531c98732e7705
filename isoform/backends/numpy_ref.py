"""The NumPy reference backend: every op runs its own NumPy reference. This is the specification
the other backends are tested against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..ir import Graph, all_ops
from ..ir.dtypes import DType
from .base import Backend, InputChecker, Program, check_params, generate


class NumpyBackend(Backend):
    name = "numpy"
    framework = "numpy"

    def __init__(self) -> None:
        super().__init__()
        for name, op in all_ops().items():
            self.lowerings[name] = op.reference

    def compile(self, graph: Graph, params: Mapping[str, Any]) -> NumpyProgram:
        check_params(self.name, graph, params)
        return NumpyProgram(self, graph, params)

    def to_native(self, array: np.ndarray, dtype: DType) -> np.ndarray:
        return np.asarray(array).astype(dtype.numpy, copy=False)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)


class NumpyProgram(Program):
    def __init__(self, backend: NumpyBackend, graph: Graph, params: Mapping[str, Any]):
        super().__init__(backend, graph)
        self.params = {p.name: backend.to_native(params[p.name], p.dtype) for p in graph.params}
        self._run = generate(backend.prepare(graph), backend.lowerings)
        self._check = InputChecker(graph, np.shape, lambda x: x.dtype)
        self._dtypes = {v.name: v.dtype.numpy for v in graph.inputs}

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        env = self._check(arrays)
        arrays = {k: a if a.dtype == self._dtypes[k] else a.astype(self._dtypes[k]) for k, a in arrays.items()}
        return self._run(self.params, arrays, env)

    def numpy_params(self) -> dict[str, np.ndarray]:
        return dict(self.params)


backend = NumpyBackend()
