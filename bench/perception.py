"""Vision and speech encoders on every isoform backend against `transformers` (PyTorch, SDPA) in the
same run: ViT-Base/16 forward on 224 x 224 images (batch 1 and 8) and Wav2Vec2-base on 10 s of
16 kHz audio (batch 1).

    python -m bench.perception [--backends torch jax] [--models vit wav2vec2] [--rounds 7]

Random-init checkpoints of the base configs (`ViTConfig()`, `Wav2Vec2Config()`, f32) saved once in a
temp directory; random inputs; steady-state seconds per call (interleaved rounds, median and min) and
the first call (compiling, for jitted backends) separately; ratio isoform / HF; parity (max abs
difference of every output vs HF). Target: every backend <= 1.10x HF. The NumPy reference is left
out by default (no target; minutes per call).

Prints a table, writes bench/results/perception.json.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.common import first_call, random_checkpoint, table, write_results
from bench.encoder import _sync, interleaved, thread_counts

SPEED_TARGET, PARITY = 1.10, 1e-4


MODELS = {  # name -> (transformers class, config class, batch sizes, input name, input shape after the batch)
    "vit": ("ViTModel", "ViTConfig", (1, 8), "pixel_values", (3, 224, 224)),
    "wav2vec2": ("Wav2Vec2Model", "Wav2Vec2Config", (1,), "input_values", (160_000,)),
}


def speed(model: str, names: list[str], rounds: int) -> dict[str, Any]:
    import torch
    import transformers

    import isoform

    cls, config, batches, input_name, shape = MODELS[model]
    ckpt = random_checkpoint(f"{model}-base", cls, config)
    hf = getattr(transformers, cls).from_pretrained(ckpt, attn_implementation="sdpa").eval()
    models = {name: isoform.Model.load(ckpt, backend=name) for name in tqdm(names, desc=f"load {model}-base")}
    results: dict[str, Any] = {"hf": {}, **{name: {} for name in names}}
    for b in tqdm(batches, desc="batch sizes"):
        x = {input_name: np.random.default_rng(0).normal(size=(b, *shape)).astype(np.float32)}
        tin = {k: torch.from_numpy(v) for k, v in x.items()}

        def run_hf(tin: dict = tin) -> Any:
            with torch.inference_mode():
                return hf(**tin)

        results["hf"][b] = {"first_s": first_call(run_hf)}
        expected = {k: v.numpy() for k, v in run_hf().items() if isinstance(v, torch.Tensor)}
        fns = {"hf": run_hf}
        for name, m in models.items():
            compile_s = first_call(lambda m=m, name=name, x=x: _sync(name, m(**x)))
            got = m(**x).numpy()
            diff = max(float(np.abs(got[k] - expected[k]).max()) for k in expected)
            results[name][b] = {"first_s": compile_s, "max_abs_diff": diff}
            fns[name] = lambda m=m, name=name, x=x: _sync(name, m(**x))
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
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    args = ap.parse_args()
    results = {model: speed(model, args.backends, args.rounds) for model in args.models}
    rows = []
    for model, res in results.items():
        for name in args.backends:
            for b, r in res[name].items():
                rows.append([model, name, b, r["first_s"], r["steady_s"]["median"] * 1e3,
                             res["hf"][b]["steady_s"]["median"] * 1e3, r["ratio"], r["ratio_min"], r["max_abs_diff"],
                             "ok" if r["ratio"] <= SPEED_TARGET and r["max_abs_diff"] <= PARITY else "MISS"])
    print(table(["model", "backend", "batch", "first s", "ms/call", "hf ms/call", "ratio", "ratio(min)", "max diff",
                 f"<= {SPEED_TARGET}x"], rows))
    path = write_results("perception", {"models": {m: MODELS[m][:2] for m in args.models}, "backends": args.backends,
                                        "threads": thread_counts(), "speed": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
