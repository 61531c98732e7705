"""The framing of multi-tower models (CLIP; later LXMERT, DPR, ...): inputs of several modalities,
each with its own batch dim, through towers that meet only in the heads.

A family subclasses `Towers`, declares ``input_specs(task)`` (one spec per input of every tower the
task uses) and writes ``forward(task, inputs)``: the declared inputs as graph tensors, by name ->
the outputs by their transformers names. `Towers.build` declares the inputs and outputs around it.
"""

from __future__ import annotations

from ..ir import Graph, GraphBuilder, Tensor
from ..ir.dtypes import DType, as_dtype
from .base import Architecture


class Towers(Architecture):
    """Base of multi-tower models; see the module docstring."""

    def forward(self, task: str | None, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def build(self, task: str | None = None, dtype: DType | str = "float32") -> Graph:
        self.check_task(task)
        g = GraphBuilder(f"{self.model_type}:{task or 'base'}", dtype=as_dtype(dtype),
                         metadata={"model_type": self.model_type, "task": task})
        inputs = {spec.name: spec.declare(g) for spec in self.input_specs(task).specs}
        for name, t in self.forward(task, inputs).items():
            g.output(name, t)
        return g.build()
