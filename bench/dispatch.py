"""Per-call overhead of each backend on a tiny graph (two matmuls), against the same computation
written directly in that framework. Prints a table and writes bench/results/dispatch.json.

    python -m bench.dispatch [--backends torch jax] [--batch 8] [--width 64]
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from bench.common import table, time_call, write_results
from isoform import backends
from isoform.ir import GraphBuilder


def tiny_graph(width: int):
    g = GraphBuilder("two_matmuls")
    x = g.input("x", ["batch", width], "f32")
    g.output("y", x @ g.param("w1", [width, width]) @ g.param("w2", [width, width]))
    return g.build()


def hand_written(name: str, w1: np.ndarray, w2: np.ndarray, x: np.ndarray):
    """(callable, native input) computing x @ w1 @ w2 directly in the framework."""
    if name == "numpy":
        return (lambda: x @ w1 @ w2), x
    if name == "torch":
        import torch

        tw1, tw2, tx = (torch.from_numpy(a) for a in (w1, w2, x))

        def run():
            with torch.inference_mode():
                return torch.matmul(torch.matmul(tx, tw1), tw2)

        return run, tx
    if name == "jax":
        import jax
        import jax.numpy as jnp

        f = jax.jit(lambda p, x: {"y": x @ p["w1"] @ p["w2"]})
        p, jx = {"w1": jnp.asarray(w1), "w2": jnp.asarray(w2)}, jnp.asarray(x)
        return (lambda: f(p, jx)["y"].block_until_ready()), jx
    if name == "tensorflow":
        import tensorflow as tf

        v1, v2 = tf.Variable(w1), tf.Variable(w2)
        f = tf.function(lambda x: tf.matmul(tf.matmul(x, v1), v2),
                        input_signature=[tf.TensorSpec([None, x.shape[1]], tf.float32)])
        tx = tf.constant(x)
        return (lambda: f(tx)), tx
    if name == "onnxruntime":
        from isoform.backends.onnxruntime import backend as ort_backend

        program = ort_backend.compile(tiny_graph(x.shape[1]), {"w1": w1, "w2": w2})
        session = program.session
        return (lambda: session.run(None, {"x": x})), x
    return None, None


def sync(name: str, out):
    if name == "jax":
        out["y"].block_until_ready()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", nargs="*", default=backends.available())
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=64)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    w1, w2 = (rng.normal(size=(args.width, args.width)).astype(np.float32) for _ in range(2))
    x = rng.normal(size=(args.batch, args.width)).astype(np.float32)
    graph = tiny_graph(args.width)
    rows, results = [], {}
    for name in tqdm(args.backends, desc="backends"):
        baseline, native_x = hand_written(name, w1, w2, x)
        if baseline is None:
            continue
        program = backends.get(name).compile(graph, {"w1": w1, "w2": w2})
        ours = time_call(lambda p=program, n=name, nx=native_x: sync(n, p(x=nx)))
        ours_np = time_call(lambda p=program, n=name: sync(n, p(x=x)))
        theirs = time_call(baseline)
        ratio = ours["median"] / theirs["median"]
        results[name] = {"isoform_native_s": ours, "isoform_numpy_input_s": ours_np, "hand_written_s": theirs, "ratio": ratio}
        rows.append([name, theirs["median"] * 1e6, ours["median"] * 1e6, ratio, ours_np["median"] * 1e6])
    print(table(["backend", "hand-written us", "isoform us", "ratio", "isoform (numpy in) us"], rows))
    path = write_results("dispatch", {"batch": args.batch, "width": args.width, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
