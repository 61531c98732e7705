"""Graph rewrites."""

from __future__ import annotations

from collections.abc import Callable

from .builder import GraphBuilder, Tensor
from .graph import Graph
from .registry import get_op
from .rewrite import carry_taps


def decompose(graph: Graph, keep: Callable[[str], bool]) -> Graph:
    """Replace every composite op for which ``keep(op)`` is false by its decomposition, recursively.
    Inputs, parameters, outputs and metadata keep their names; intermediate values are renumbered."""
    while any(get_op(n.op).is_composite and not keep(n.op) for n in graph.nodes):
        g = GraphBuilder(graph.name, metadata=graph.metadata)
        env: dict[str, Tensor] = {v.name: g.input(v.name, v.shape, v.dtype, sharding=v.sharding) for v in graph.inputs}
        env.update({v.name: g.param(v.name, v.shape, v.dtype, sharding=v.sharding) for v in graph.params})
        for node in graph.nodes:
            op = get_op(node.op)
            args = [None if n is None else env[n] for n in node.inputs]
            while args and args[-1] is None:
                args.pop()
            if op.is_composite and not keep(node.op):
                out = op.decompose(*args, **node.attrs)
            else:
                out = g.add(node.op, *args, **node.attrs)
            outs = out if isinstance(out, tuple) else (out,)
            env.update({o.name: t for o, t in zip(node.outputs, outs, strict=True)})
        for name, value in graph.outputs.items():
            g.output(name, env[value])
        carry_taps(g, graph, env)
        graph = g.build()
    return graph
