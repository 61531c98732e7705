"""Where two runs of one model disagree: the same IR graph on two backends (or one backend in two
dtypes), value by value, down to the first node whose outputs differ beyond tolerance.

    report = isoform.compare(model, backends=("numpy", "jax"))
    print(report)           # per-layer table, then the first diverging node with its IR line

Two passes keep it fast on large models: every layer's output first (a layer is the run of nodes
that read parameters of one ``<prefix>.<index>`` block, e.g. ``encoder.layer.3``; nodes reading no
parameter belong to the block before them), then every node of the first layer that diverges.
``every_node=True`` compares every value in one pass. `compare_with_transformers` compares the
layer outputs with transformers' ``output_hidden_states`` on the same checkpoint instead.

Values are compared in float64: a value diverges where ``|a - b| > atol + rtol * |b|`` (b: the first
run); equal infinities and NaNs at the same places agree (mask constants); integer and boolean
values must be equal.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import backends as _backends
from .errors import ConfigError, InputError
from .ir import Graph
from .ir.dtypes import as_dtype
from .weights.dtypes import check_float_dtype, is_floating

#: Default (atol, rtol) per compute dtype: the suite's parity bar for float32, half precision's.
TOLERANCE = {"float32": (1e-4, 1e-4), "float16": (2e-2, 2e-2), "bfloat16": (6e-2, 6e-2)}


@dataclass
class Difference:
    """How far one value of run b is from run a."""

    max_abs: float
    max_rel: float
    diverges: bool

    @staticmethod
    def of(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> Difference:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return Difference(float("inf"), float("inf"), True)
        if a.dtype.kind in "biu" and b.dtype.kind in "biu":
            d = np.abs(a.astype(np.int64) - b.astype(np.int64))
            worst = float(d.max()) if d.size else 0.0
            return Difference(worst, worst, worst > 0)
        x, y = a.astype(np.float64), b.astype(np.float64)
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        d = np.where(same, 0.0, np.abs(x - y))
        d = np.where(np.isnan(d), np.inf, d)
        rel = d / np.maximum(np.abs(x), np.finfo(np.float64).tiny)
        bad = d > atol + rtol * np.where(np.isfinite(x), np.abs(x), 0.0)
        return Difference(float(d.max()) if d.size else 0.0, float(rel.max()) if rel.size else 0.0, bool(bad.any()))


@dataclass
class LayerRow:
    """One layer's output compared: the block's name, the IR value, its difference."""

    layer: str
    value: str
    difference: Difference


@dataclass
class DivergingNode:
    """The first node whose output diverges: index, op, IR line, the parameters it reads and the
    layer it belongs to."""

    index: int
    op: str
    line: str
    layer: str
    params: list[str]
    difference: Difference


@dataclass
class Comparison:
    """The result of `compare`: what ran, the per-layer table, each graph output's difference, and
    the first diverging node (None when the runs agree)."""

    runs: tuple[str, str]
    atol: float
    rtol: float
    layers: list[LayerRow]
    outputs: dict[str, Difference]
    first: DivergingNode | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first is None and not any(d.diverges for d in self.outputs.values())

    def __str__(self) -> str:
        a, b = self.runs
        lines = [f"{b} vs {a} (atol {self.atol:g}, rtol {self.rtol:g})", "",
                 f"{'layer':<28} {'value':>8} {'max abs':>10} {'max rel':>10}"]
        for row in self.layers:
            d = row.difference
            mark = "  <- diverges" if d.diverges else ""
            lines.append(f"{row.layer:<28} {row.value:>8} {d.max_abs:>10.3g} {d.max_rel:>10.3g}{mark}")
        lines.append("")
        for name, d in self.outputs.items():
            lines.append(f"output {name}: max abs {d.max_abs:.3g}, max rel {d.max_rel:.3g}{' (diverges)' if d.diverges else ''}")
        lines.extend(self.notes)
        if self.first is None:
            lines.append("no node diverges beyond tolerance")
        else:
            f = self.first
            lines += ["", f"first diverging node: {f.index} ({f.op}) in {f.layer}",
                      f"  {f.line.strip()}",
                      f"  reads {', '.join(f.params) if f.params else 'no parameters'}",
                      f"  max abs {f.difference.max_abs:.3g}, max rel {f.difference.max_rel:.3g}"]
        return "\n".join(lines)


# -- layers of a graph ---------------------------------------------------------------------------
def block_of(param: str) -> str:
    """The block a parameter belongs to: its name up to the first numeric part (``encoder.layer.3``),
    else its first part (``embeddings``)."""
    parts = param.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[: i + 1])
    return parts[0]


def layers(graph: Graph) -> list[tuple[str, list[int]]]:
    """The graph's nodes as consecutive runs ``(block, node indices)``; see the module docstring."""
    params = {p.name for p in graph.params}
    runs: list[tuple[str, list[int]]] = []
    for i, node in enumerate(graph.nodes):
        read = [n for n in node.inputs if n in params]
        block = block_of(read[0]) if read else (runs[-1][0] if runs else "inputs")
        if runs and runs[-1][0] == block:
            runs[-1][1].append(i)
        else:
            runs.append((block, [i]))
    return runs


def block_output(graph: Graph, nodes: Sequence[int]) -> int:
    """The node standing for a block's output: the last float value of the block's most common float
    shape (the hidden states a layer passes on; a mask or a pooled slice computed alongside is
    not it), else the block's last node."""
    floats = [i for i in nodes if graph.nodes[i].outputs[0].dtype.is_float]
    if not floats:
        return nodes[-1]
    counts = Counter(graph.nodes[i].outputs[0].shape for i in floats)
    top = max(counts.values())
    return next(i for i in reversed(floats) if counts[graph.nodes[i].outputs[0].shape] == top)


def _probe(graph: Graph, values: Sequence[str]) -> Graph:
    """``graph`` with ``values`` as extra outputs ``v<name>``."""
    outputs = dict(graph.outputs)
    outputs.update({f"v{v}": v for v in values})
    return Graph(graph.name, graph.inputs, graph.params, graph.nodes, outputs, graph.metadata)


def _lines(graph: Graph) -> list[str]:
    text = str(graph).splitlines()
    return text[1 + len(graph.params): 1 + len(graph.params) + len(graph.nodes)]


# -- running -------------------------------------------------------------------------------------
@dataclass
class _Run:
    label: str
    dtype: str
    backend: Any
    graph: Graph
    params: dict[str, np.ndarray]

    def values(self, names: Sequence[str], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        program = self.backend.compile(_probe(self.graph, names), self.params)
        feeds = {v.name: inputs[v.name].astype(v.dtype.numpy) for v in self.graph.inputs}
        out = program(**feeds)
        return {k: np.asarray(self.backend.to_numpy(v)) for k, v in out.items()}


def _runs(model: Any, backends: Sequence[Any], dtypes: Sequence[str | None]) -> list[_Run]:
    runs = []
    base = model.program.numpy_params()
    for be, dt in zip(backends, dtypes):
        be = _backends.get(be)
        dt = check_float_dtype(dt) or model.dtype
        graph = model.graph if dt == model.dtype else model.arch.graphs(model.task, dt)["forward"]
        target = as_dtype(dt).numpy
        params = {k: v.astype(target) if is_floating(v.dtype) else v for k, v in base.items()}
        runs.append(_Run(f"{be.name}/{dt}", dt, be, graph, params))
    return runs


def _aligned(a: Graph, b: Graph) -> list[tuple[int, int]]:
    """Node pairs of two builds of one model (another dtype may add or drop casts)."""
    keep = lambda g: [i for i, n in enumerate(g.nodes) if n.op != "cast"]
    ia, ib = keep(a), keep(b)
    if [a.nodes[i].op for i in ia] != [b.nodes[i].op for i in ib]:
        raise ConfigError(f"graphs {a.name!r} and {b.name!r} differ beyond casts; compare one dtype on two backends")
    return list(zip(ia, ib))


def _model_inputs(model: Any, inputs: Mapping[str, Any] | None, seed: int) -> dict[str, np.ndarray]:
    from .architectures.inputs import sample_inputs

    if inputs is None:
        inputs = sample_inputs(model.arch, model.task, seed)[1]
    arrays = {k: np.asarray(v) for k, v in inputs.items() if v is not None}
    model.inputs.check(arrays)
    return model.inputs.complete(arrays)


def compare(model: Any, backends: Sequence[Any] = ("numpy", "torch"), *, dtypes: Sequence[str | None] | None = None,
            inputs: Mapping[str, Any] | None = None, seed: int = 0, atol: float | None = None,
            rtol: float | None = None, every_node: bool = False) -> Comparison:
    """Run ``model``'s forward graph on two backends (one backend given once with two ``dtypes``
    compares the dtypes) on ``inputs`` (default: random inputs from the model's input specs drawn
    with ``seed``) and find the first node whose outputs diverge; see the module docstring."""
    backends = list(backends)
    dtypes = list(dtypes) if dtypes is not None else [None] * len(backends)
    if len(backends) == 1 and len(dtypes) == 2:
        backends *= 2
    if len(backends) != 2 or len(dtypes) != 2:
        raise InputError(f"compare needs two runs: two backends, or one backend and two dtypes; got backends "
                         f"{backends} and dtypes {dtypes}")
    a, b = _runs(model, backends, dtypes)
    if a.label == b.label:
        raise InputError(f"both runs are {a.label}: compare two backends or two dtypes")
    tol = max((TOLERANCE[r.dtype] for r in (a, b)), key=lambda t: t[0])
    atol, rtol = atol if atol is not None else tol[0], rtol if rtol is not None else tol[1]
    feeds = _model_inputs(model, inputs, seed)
    pairs = dict(_aligned(a.graph, b.graph))
    blocks = [(name, [i for i in nodes if i in pairs]) for name, nodes in layers(a.graph)]
    blocks = [(name, nodes) for name, nodes in blocks if nodes]

    def first_output(g: Graph, i: int) -> str:
        return g.nodes[i].outputs[0].name

    ends = [block_output(a.graph, nodes) for _, nodes in blocks]
    chosen = [i for _, nodes in blocks for i in nodes] if every_node else ends
    va = a.values([first_output(a.graph, i) for i in chosen], feeds)
    vb = b.values([first_output(b.graph, pairs[i]) for i in chosen], feeds)
    diff = {i: Difference.of(va[f"v{first_output(a.graph, i)}"], vb[f"v{first_output(b.graph, pairs[i])}"], atol, rtol)
            for i in chosen}
    rows = [LayerRow(name, f"%{first_output(a.graph, end)}", diff[end]) for (name, _), end in zip(blocks, ends)]
    outputs = {k: Difference.of(va[k], vb[k], atol, rtol) for k in a.graph.outputs}
    report = Comparison((a.label, b.label), atol, rtol, rows, outputs)
    bad = next((block for block, end in zip(blocks, ends) if diff[end].diverges), None)
    if bad is None:
        if not every_node and any(d.diverges for d in outputs.values()):
            report.notes.append("every layer output agrees but an output diverges: rerun with every_node=True")
        return report
    name, nodes = bad
    if not every_node:
        wa = a.values([o.name for i in nodes for o in a.graph.nodes[i].outputs], feeds)
        wb = b.values([o.name for i in nodes for o in b.graph.nodes[pairs[i]].outputs], feeds)
    else:
        wa, wb = va, vb
    params = {p.name for p in a.graph.params}
    lines = _lines(a.graph)
    for i in nodes:
        outs = zip(a.graph.nodes[i].outputs, b.graph.nodes[pairs[i]].outputs)
        found = [Difference.of(wa[f"v{x.name}"], wb[f"v{y.name}"], atol, rtol) for x, y in outs
                 if f"v{x.name}" in wa and f"v{y.name}" in wb]
        worst = next((d for d in found if d.diverges), None)
        if worst is not None:
            node = a.graph.nodes[i]
            report.first = DivergingNode(i, node.op, lines[i], name, [n for n in node.inputs if n in params], worst)
            break
    return report


def compare_with_transformers(model: Any, checkpoint: str | os.PathLike[str], *, inputs: Mapping[str, Any] | None = None,
                              seed: int = 0, atol: float | None = None, rtol: float | None = None) -> Comparison:
    """Compare ``model``'s layer outputs (on its own backend) with transformers' ``hidden_states``
    (``output_hidden_states=True``) of the task's class loaded from ``checkpoint``: the embeddings'
    output with ``hidden_states[0]``, layer k's with ``hidden_states[k + 1]`` (the last one may
    include the final norm). ``first`` is the first layer that diverges (its last node)."""
    import torch
    import transformers

    cls = getattr(transformers, model.arch.tasks[model.task])
    hf = cls.from_pretrained(os.fspath(checkpoint)).eval()
    feeds = _model_inputs(model, inputs, seed)
    with torch.no_grad():
        out = hf(**{k: torch.from_numpy(v) for k, v in feeds.items()}, output_hidden_states=True)
    hidden = getattr(out, "hidden_states", None)
    if hidden is None:
        raise ConfigError(f"{cls.__name__} returns no hidden_states to compare with (encoder-decoder models: "
                          "compare two backends instead)")
    atol = TOLERANCE["float32"][0] if atol is None else atol
    rtol = TOLERANCE["float32"][1] if rtol is None else rtol
    graph = model.graph
    blocks = layers(graph)
    numbered = [k for k, (name, _) in enumerate(blocks) if re.search(r"\.\d+$", name)]
    if not numbered:
        raise ConfigError(f"graph {graph.name!r} has no numbered layers to line up with hidden_states")
    candidates = [[numbered[0] - 1]] + [[k] for k in numbered]
    candidates[-1].append(numbered[-1] + 1)  # the last hidden state may be after the final norm
    candidates = candidates[: len(hidden)]
    wanted = sorted({k for c in candidates for k in c if 0 <= k < len(blocks)})
    run = _Run(f"{model.backend.name}/{model.dtype}", model.dtype, model.backend, graph, model.program.numpy_params())
    ends = {k: block_output(graph, blocks[k][1]) for k in wanted}
    names = {k: graph.nodes[i].outputs[0].name for k, i in ends.items()}
    got = run.values(list(names.values()), feeds)
    rows, first = [], None
    lines = _lines(graph)
    for h, ks in zip(hidden, candidates):
        want = h.numpy()
        options = [(Difference.of(want, got[f"v{names[k]}"], atol, rtol), k) for k in ks if k in names]
        if not options:
            continue
        d, k = min(options, key=lambda o: o[0].max_abs)
        name = blocks[k][0]
        rows.append(LayerRow(name, f"%{names[k]}", d))
        if d.diverges and first is None:
            node = graph.nodes[ends[k]]
            first = DivergingNode(ends[k], node.op, lines[ends[k]], name,
                                  [n for n in node.inputs if n in {p.name for p in graph.params}], d)
    ours = model(**feeds).numpy()
    outputs = {key: Difference.of(getattr(out, key).numpy(), ours[key], atol, rtol) for key in graph.outputs
               if isinstance(getattr(out, key, None), torch.Tensor)}
    return Comparison((f"transformers {cls.__name__}", run.label), atol, rtol, rows, outputs, first)
