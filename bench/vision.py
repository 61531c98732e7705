"""ViT-Base/16 forward (224 x 224 images) on every isoform backend against `transformers` (PyTorch,
SDPA) in the same run.

    python -m bench.vision [--backends torch jax] [--batches 1 8] [--rounds 7]

A random-init `ViTConfig()` checkpoint (vit-base-patch16-224 shape, f32) saved once in a temp
directory; random pixels; steady-state seconds per call (interleaved rounds, median and min) and
the first call (`m.warmup`: compiling, for jitted backends) separately; ratio isoform / HF; parity
(max abs difference of every output vs HF). Target: every backend <= 1.10x HF. The NumPy reference
is left out by default (no target; minutes per b8 call).

Prints a table, writes bench/results/vision.json.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.common import first_call, random_checkpoint, table, write_results
from bench.encoder import _sync, interleaved, thread_counts

SPEED_TARGET, PARITY = 1.10, 1e-4


def speed(names: list[str], batches: list[int], rounds: int) -> dict[str, Any]:
    import torch
    import transformers

    import isoform

    ckpt = random_checkpoint("vit-base", "ViTModel", "ViTConfig")
    hf = transformers.ViTModel.from_pretrained(ckpt, attn_implementation="sdpa").eval()
    models = {name: isoform.Model.load(ckpt, backend=name) for name in tqdm(names, desc="load vit-base")}
    results: dict[str, Any] = {"hf": {}, **{name: {} for name in names}}
    for b in tqdm(batches, desc="batch sizes"):
        pixels = np.random.default_rng(0).normal(size=(b, 3, 224, 224)).astype(np.float32)
        tin = torch.from_numpy(pixels)

        def run_hf(tin: Any = tin) -> Any:
            with torch.inference_mode():
                return hf(pixel_values=tin)

        results["hf"][b] = {"first_s": first_call(run_hf)}
        out = run_hf()
        expected = {"last_hidden_state": out.last_hidden_state.numpy(), "pooler_output": out.pooler_output.numpy()}
        fns = {"hf": run_hf}
        for name, m in models.items():
            compile_s = first_call(lambda m=m, name=name, pixels=pixels: _sync(name, m(pixel_values=pixels)))
            got = m(pixel_values=pixels).numpy()
            diff = max(float(np.abs(got[k] - expected[k]).max()) for k in expected)
            results[name][b] = {"first_s": compile_s, "max_abs_diff": diff}
            fns[name] = lambda m=m, name=name, pixels=pixels: _sync(name, m(pixel_values=pixels))
        for name, t in interleaved(fns, rounds=rounds).items():
            results[name][b]["steady_s"] = t
        for name in names:
            ours, theirs = results[name][b]["steady_s"], results["hf"][b]["steady_s"]
            results[name][b]["ratio"] = ours["median"] / theirs["median"]
            results[name][b]["ratio_min"] = ours["min"] / theirs["min"]
    return results


def main() -> None:
    import isoform

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", nargs="*", default=[b for b in isoform.backends.available() if b != "numpy"])
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    args = ap.parse_args()
    results = speed(args.backends, args.batches, args.rounds)
    rows = []
    for name in args.backends:
        for b in args.batches:
            r = results[name][b]
            rows.append([name, b, r["first_s"], r["steady_s"]["median"] * 1e3, results["hf"][b]["steady_s"]["median"] * 1e3,
                         r["ratio"], r["ratio_min"], r["max_abs_diff"],
                         "ok" if r["ratio"] <= SPEED_TARGET and r["max_abs_diff"] <= PARITY else "MISS"])
    print(table(["backend", "batch", "first s", "ms/call", "hf ms/call", "ratio", "ratio(min)", "max diff",
                 f"<= {SPEED_TARGET}x"], rows))
    path = write_results("vision", {"model": "vit-base-patch16-224 random init (ViTConfig()), f32", "image": 224,
                                    "batches": args.batches, "backends": args.backends, "threads": thread_counts(),
                                    "speed": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
