"""Graph rewrites over taps: the values an architecture marks with `GraphBuilder.tap` (kept in
``graph.metadata["taps"]`` as ``{kind: [value names]}``, so they survive ``to_json``).

* `expose(graph, kinds)`: the graph with more outputs, ``{kind}.{i}`` for the i-th value of each tap
  kind: the hidden states at each layer boundary as they are, and for attention kinds the softmax
  probabilities [batch, heads, seq_q, seq_k], recomputed from the tapped ``attention`` node's own
  inputs (q, k, mask, scale, causal, grouped heads) by `attention_probabilities`.
* `as_input(graph, kind)`: the graph with the one value tapped as ``kind`` (``inputs_embeds``,
  ``position_ids``) replaced by a graph input of that name, and the nodes and inputs that no longer
  feed an output pruned (the word lookup and ``input_ids``, the ``iota`` positions).

Both return new, validated graphs; values are renumbered and the taps follow them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from ..errors import GraphError
from . import dims as D
from .builder import TAPS, GraphBuilder, Tensor
from .graph import Graph, Node, Value
from .ops.composite import attention_probabilities
from .registry import TensorType


def taps(graph: Graph) -> dict[str, list[str]]:
    """The graph's taps: ``{kind: [value names]}`` in the order the builder recorded them."""
    return {k: list(v) for k, v in graph.metadata.get(TAPS, {}).items()}


def expose(graph: Graph, kinds: Collection[str]) -> Graph:
    """``graph`` with outputs ``{kind}.{i}`` added for every value tapped as one of ``kinds``
    (attention kinds, those ending in ``attentions``, as probabilities). GraphError names a kind
    the graph has no taps of."""
    tapped = _require(graph, kinds)
    producer = {o.name: node for node in graph.nodes for o in node.outputs}
    g, env = GraphBuilder(graph.name, metadata=graph.metadata), {}
    for v in graph.inputs:
        env[v.name] = g.input(v.name, v.shape, v.dtype, sharding=v.sharding)
    _replay(g, graph, graph.nodes, env)
    for name, value in graph.outputs.items():
        g.output(name, env[value])
    for kind in kinds:
        for i, value in enumerate(tapped[kind]):
            t = env[value]
            if kind.endswith("attentions"):
                node = producer.get(value)
                if node is None or node.op != "attention":
                    raise GraphError(f"tap {kind}[{i}] (%{value}) is not the output of an attention node")
                q, k, _, mask = (*(None if n is None else env[n] for n in node.inputs), None)[:4]
                t = attention_probabilities(q, k, mask, **node.attrs)
            g.output(f"{kind}.{i}", t)
    return _finish(g, graph, env)


def as_input(graph: Graph, kind: str, shape: Sequence[D.Dim] | None = None) -> Graph:
    """``graph`` with the value tapped as ``kind`` made a graph input named ``kind`` (its shape, or
    ``shape``: e.g. ["batch", "seq"] for positions the graph computes as [seq]), placed where the first
    input it makes unused was; nodes and inputs that no longer feed an output are pruned. GraphError
    if the graph has not exactly one such tap or the rewritten graph does not check."""
    (value,) = _require(graph, [kind], single=True)[kind]
    old = graph.values[value]
    new = Value(kind, TensorType(tuple(D.canonical(d) for d in (old.shape if shape is None else shape)), old.dtype))
    if any(not (isinstance(d, int) or d.isidentifier()) for d in new.shape):
        raise GraphError(f"tap {kind!r} has shape {D.fmt(new.shape)}: a graph input needs plain dims")
    if new.name in graph.values:
        raise GraphError(f"graph {graph.name!r} already has a value named {kind!r}")
    live, nodes = _live(graph, cut=value)
    inputs = [v for v in graph.inputs if v.name in live]
    dropped = [i for i, v in enumerate(graph.inputs) if v.name not in live]
    inputs.insert(dropped[0] if dropped else len(inputs), new)
    g, env = GraphBuilder(graph.name, metadata=graph.metadata), {}
    for v in inputs:
        env[v.name] = g.input(v.name, v.shape, v.dtype, sharding=v.sharding)
    env[value] = env[new.name]
    try:
        _replay(g, graph, nodes, env)
    except GraphError as e:
        raise GraphError(f"{kind} of shape {D.fmt(new.shape)} cannot replace %{value} {old.type} in graph "
                         f"{graph.name!r}: {e}") from None
    for name, v in graph.outputs.items():
        g.output(name, env[v])
    return _finish(g, graph, env, drop=kind)


def _require(graph: Graph, kinds: Collection[str], single: bool = False) -> dict[str, list[str]]:
    tapped = taps(graph)
    for kind in kinds:
        if kind not in tapped:
            raise GraphError(f"graph {graph.name!r} has no {kind!r} taps; it has {sorted(tapped) or 'none'}")
        if single and len(tapped[kind]) != 1:
            raise GraphError(f"graph {graph.name!r} taps {len(tapped[kind])} values as {kind!r}, not one")
    return tapped


def _replay(g: GraphBuilder, graph: Graph, nodes: Sequence[Node], env: dict[str, Tensor]) -> None:
    """Add ``nodes`` (of ``graph``) to ``g``, types inferred anew; ``env`` maps old value names to new tensors."""
    env.update({p.name: g.param(p.name, p.shape, p.dtype, sharding=p.sharding) for p in graph.params})
    for node in nodes:
        args = [None if n is None else env[n] for n in node.inputs]
        while args and args[-1] is None:
            args.pop()
        out = g.add(node.op, *args, **node.attrs)
        env.update({o.name: t for o, t in zip(node.outputs, out if isinstance(out, tuple) else (out,), strict=True)})


def _live(graph: Graph, cut: str) -> tuple[set[str], list[Node]]:
    """Values and nodes that feed an output when value ``cut`` becomes an input (its node is not run)."""
    live, nodes = set(graph.outputs.values()), []
    for node in reversed(graph.nodes):
        names = {o.name for o in node.outputs}
        if cut in names:
            if len(names) > 1:
                raise GraphError(f"tapped value %{cut} is one of several outputs of a {node.op} node")
            continue
        if names & live:
            live.update(n for n in node.inputs if n is not None)
            nodes.append(node)
    return live, nodes[::-1]


def carry_taps(g: GraphBuilder, graph: Graph, env: Mapping[str, Tensor], drop: str | None = None) -> None:
    """Give ``g`` (rebuilding ``graph``; ``env`` maps its value names to ``g``'s tensors) ``graph``'s taps,
    renamed; a kind with a value ``g`` lacks (or kind ``drop``) is left out."""
    carried = {kind: [env[v].name for v in values] for kind, values in taps(graph).items()
               if kind != drop and all(v in env for v in values)}
    g.metadata.pop(TAPS, None)
    if carried:
        g.metadata[TAPS] = carried


def _finish(g: GraphBuilder, graph: Graph, env: Mapping[str, Tensor], drop: str | None = None) -> Graph:
    carry_taps(g, graph, env, drop)
    return g.build()
