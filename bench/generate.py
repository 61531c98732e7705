"""Greedy generation with GPT-2 small on every isoform backend against transformers' `generate` in the
same run, and how close decoding gets to the memory-bandwidth bound.

    python -m bench.generate [--backends torch jax] [--prompt 16] [--new 64] [--rounds 3] [--optimum] [--smoke]

- A random-init `GPT2Config()` checkpoint (GPT-2 small, f32) saved once in a temp directory; one prompt
  of 16 random tokens (batch 1); 64 new tokens, greedy, no eos (every run makes all 64).
- transformers: ``model.generate(..., use_cache=True)`` (torch, SDPA, dynamic cache).
- isoform: ``Model.generate`` (static KV cache in the graph, `isoform.generation.Decoder`).
- ``--optimum``: also ``optimum-onnx``, decoding from the files of ``export_onnx(dir, use_cache=True)``
  (Optimum's layout, growing KV cache) with isoform's search over ONNX Runtime sessions
  (`isoform.optimum.OptimumGenerator`).
- ``--smoke``: a 2-layer, 128-wide GPT-2 instead of GPT-2 small, to check the script runs; nothing is written.
- Both measured the same way: T(n) = wall time of a ``generate`` call making n tokens; prefill = T(1)
  (prompt forward + first token), decode tok/s = (n - 1) / (T(n) - T(1)). Rounds interleave all
  engines (order rotated) so load from other processes hits them alike; medians are reported. The
  first call (compiling, for jitted backends) is reported separately.
- Parity: isoform's tokens must equal transformers' (the same greedy continuation).
- Bound: bytes read per decode step (every weight once; the tied embedding as LM head, position rows
  negligible) / memory bandwidth (a NumPy copy of a 512 MB array: 2 x size / time).
  Targets: every backend >= 1.0x transformers' tok/s, the best >= 2.0x.

Prints a table, writes bench/results/generate.json and bench/results/generate.png.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.common import RESULTS, first_call, random_checkpoint, table, write_results

TARGET, BEST_TARGET = 1.0, 2.0


def bandwidth(size: int = 512 * 2**20, repeat: int = 5) -> float:
    """Bytes/s of a NumPy copy (read + write) of a ``size``-byte array, best of ``repeat``."""
    src, dst = np.ones(size, np.uint8), np.empty(size, np.uint8)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeat))
    return 2 * size / best


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def engines(ckpt: Path, names: list[str], ids: np.ndarray, optimum: bool = False) -> dict[str, Callable[[int], np.ndarray]]:
    """name -> generate(n) returning [1, prompt + n] int64 tokens, for transformers and each backend (and,
    with ``optimum``, the exported Optimum-layout files)."""
    import torch
    import transformers

    import isoform

    hf = transformers.GPT2LMHeadModel.from_pretrained(ckpt).eval()
    prompt = torch.from_numpy(ids)

    def run_hf(n: int) -> np.ndarray:
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False,
                               use_cache=True, eos_token_id=None, pad_token_id=0).numpy()

    out = {"hf": run_hf}
    for name in tqdm(names, desc="load gpt2-small"):
        model = isoform.Model.load(ckpt, backend=name, task="causal-lm")
        out[name] = lambda n, model=model: model.generate(ids, max_new_tokens=n, eos_token_id=None, pad_token_id=0)
    if optimum:
        from isoform.optimum import OptimumGenerator

        files = isoform.Model.load(ckpt, task="causal-lm").export_onnx(ckpt.with_name(ckpt.name + "-optimum"), use_cache=True)
        gen = OptimumGenerator.load(files)
        out["optimum-onnx"] = lambda n: gen.generate(ids, max_new_tokens=n, eos_token_id=None, pad_token_id=0)
    return out


def measure(fns: dict[str, Callable[[int], np.ndarray]], new: int, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, fn in tqdm(fns.items(), desc="first call"):
        results[name] = {"first_call_s": first_call(lambda fn=fn: fn(new)), "tokens": fn(new)[0].tolist()}
        fn(1)
    full: dict[str, list[float]] = {n: [] for n in fns}
    one: dict[str, list[float]] = {n: [] for n in fns}
    names = list(fns)
    for r in tqdm(range(rounds), desc="rounds"):
        for name in names[r % len(names):] + names[:r % len(names)]:
            full[name].append(_timed(lambda name=name: fns[name](new)))
            one[name].append(_timed(lambda name=name: fns[name](1)))
    for name in names:
        t_full, t_one = statistics.median(full[name]), statistics.median(one[name])
        results[name].update(total_s=t_full, prefill_ms=1e3 * t_one, tok_s=(new - 1) / max(t_full - t_one, 1e-9))
    return results


def report(data: dict[str, Any]) -> None:
    res, hf = data["results"], data["results"]["hf"]
    rows = []
    for name, r in res.items():
        ratio = r["tok_s"] / hf["tok_s"]
        rows.append([name, r["tok_s"], ratio, r["tok_s"] / data["bound_tok_s"], r["prefill_ms"], r["first_call_s"],
                     "-" if name == "hf" else ("yes" if r["tokens"] == hf["tokens"] else "NO")])
    print(table(["engine", "decode tok/s", "x HF", "of bound", "prefill ms", "first call s", "same tokens"], rows))
    print(f"memory bandwidth {data['bandwidth_gb_s']:.1f} GB/s, {data['weights_mb']:.0f} MB read per token: "
          f"bound {data['bound_tok_s']:.1f} tok/s")


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = data["results"]
    names = list(res)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4))
    ax.bar(["transformers" if n == "hf" else n for n in names], [res[n]["tok_s"] for n in names],
           color=["gray" if n == "hf" else "C0" for n in names])
    hf = res["hf"]["tok_s"]
    ax.axhline(hf * TARGET, color="red", ls="--", lw=1, label=f"target {TARGET}x HF")
    ax.axhline(hf * BEST_TARGET, color="green", ls=":", lw=1, label=f"best {BEST_TARGET}x HF")
    ax.axhline(data["bound_tok_s"], color="black", ls="-.", lw=1, label="weights / bandwidth bound")
    ax.set_title(f"GPT-2 small greedy decode, batch 1, {data['new_tokens']} new tokens (tok/s)")
    ax.legend(fontsize=8)
    bx.bar(["transformers" if n == "hf" else n for n in names], [res[n]["prefill_ms"] for n in names],
           color=["gray" if n == "hf" else "C1" for n in names])
    bx.set_title(f"prefill ({data['prompt_tokens']} tokens) + first token, ms")
    for a in (ax, bx):
        a.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    import isoform

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", nargs="*", default=isoform.backends.available())
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    ap.add_argument("--new", type=int, default=64, help="new tokens")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--optimum", action="store_true", help="also decode from the exported Optimum-layout ONNX files")
    ap.add_argument("--smoke", action="store_true", help="a 2-layer GPT-2, nothing written: checks the script runs")
    args = ap.parse_args()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    if args.smoke:
        ckpt = random_checkpoint("gpt2-smoke-f32", "GPT2LMHeadModel", "GPT2Config", n_layer=2, n_embd=128, n_head=4)
    else:
        ckpt = random_checkpoint("gpt2-small-f32", "GPT2LMHeadModel", "GPT2Config")
    ids = np.random.default_rng(0).integers(0, 50257, (1, args.prompt), dtype=np.int64)
    weights = sum(f.stat().st_size for f in ckpt.glob("*.safetensors"))
    bw = bandwidth()
    results = measure(engines(ckpt, args.backends, ids, args.optimum), args.new, args.rounds)
    data = {"prompt_tokens": args.prompt, "new_tokens": args.new, "torch_threads": torch.get_num_threads(),
            "bandwidth_gb_s": bw / 1e9, "weights_mb": weights / 1e6, "bound_tok_s": bw / weights,
            "results": results}
    report(data)
    if args.smoke:
        return
    path = write_results("generate", data)
    chart(data, RESULTS / "generate.png")
    print(f"wrote {path} and {RESULTS / 'generate.png'}")


if __name__ == "__main__":
    main()
