"""Seq2seq generation: a T5-small-shaped random-init model (d_model 512, 6+6 layers, 8 heads, vocab
32128), batch 1, a 32-token input, 32 new tokens, on every isoform backend against transformers
`generate` (PyTorch) in the same run.

    python -m bench.seq2seq [--backends torch jax] [--new 32] [--seq 32] [--repeat 3]

Greedy: isoform runs `Model.decoder()` (encoder graph once, then the compiled decoder-step graph with its
static self-attention cache and the fixed cross-attention cache) driven by greedy argmax; exactly
``--new`` tokens are generated on both sides (transformers with ``min_new_tokens`` = ``max_new_tokens``,
so eos cannot end it early) and the tokens are compared. Beam 4: `Model.generate(num_beams=4)` (the
shared search code over the same decoder) against `generate(num_beams=4)`. Reported: first call (compiling) and the
median steady-state seconds per generation; speedup = HF seconds / isoform seconds. Targets: every
backend >= 1.0x HF, the best >= 2.0x; numpy is the reference and has no target.

Prints a table, writes bench/results/seq2seq.json and bench/results/seq2seq.png.
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

SPEED_TARGET, BEST_TARGET = 1.0, 2.0


def seconds(fn: Callable[[], Any], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def isoform_greedy(path: Path, backend: str, ids: np.ndarray, new: int) -> Callable[[], np.ndarray]:
    import isoform

    decoder = isoform.Model.load(path, backend=backend, task="seq2seq-lm").decoder()
    mask = np.ones_like(ids)

    def run() -> np.ndarray:
        logits, tokens = decoder.prefill(ids, mask, new), []
        for _ in range(new - 1):
            tokens.append(logits.argmax(-1))
            logits = decoder.step(tokens[-1])
        tokens.append(logits.argmax(-1))
        return np.stack(tokens, axis=1)

    return run


def main() -> None:
    import isoform

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="*", default=isoform.backends.available())
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    path = random_checkpoint("t5-small-f32", "T5ForConditionalGeneration", "T5Config", decoder_start_token_id=0)
    ids = np.random.default_rng(0).integers(2, 32000, (1, args.seq))
    hf = transformers.T5ForConditionalGeneration.from_pretrained(path).eval()

    def hf_run() -> np.ndarray:
        with torch.no_grad():
            out = hf.generate(torch.from_numpy(ids), attention_mask=torch.ones(ids.shape, dtype=torch.long),
                              max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False, num_beams=1)
        return out.numpy()[:, 1:]

    hf_first = first_call(hf_run)
    hf_tokens, hf_s = hf_run(), seconds(hf_run, args.repeat)
    def hf_beam() -> np.ndarray:
        with torch.no_grad():
            return hf.generate(torch.from_numpy(ids), max_new_tokens=args.new, min_new_tokens=args.new,
                               do_sample=False, num_beams=4).numpy()

    hf_beam_first = first_call(hf_beam)
    hf_beam_tokens, hf_beam_s = hf_beam(), seconds(hf_beam, args.repeat)
    rows = [["transformers", "greedy", hf_first, hf_s, 1.0, "-"], ["transformers", "beam 4", hf_beam_first, hf_beam_s, 1.0, "-"]]
    results: dict[str, Any] = {}
    for backend in tqdm(args.backends, desc="backends"):
        run = isoform_greedy(path, backend, ids, args.new)
        first = first_call(run)
        same = bool((run() == hf_tokens).all())
        s = seconds(run, args.repeat)
        results[backend] = {"first_s": first, "steady_s": s, "speedup": hf_s / s, "same_tokens": same}
        rows.append([backend, "greedy", first, s, hf_s / s, same])
        model = isoform.Model.load(path, backend=backend, task="seq2seq-lm")
        beam = lambda model=model: model.generate(ids, max_new_tokens=args.new, min_new_tokens=args.new, num_beams=4)
        first = first_call(beam)
        same = bool((beam() == hf_beam_tokens).all())
        s = seconds(beam, args.repeat)
        results[backend + ":beam4"] = {"first_s": first, "steady_s": s, "speedup": hf_beam_s / s, "same_tokens": same}
        rows.append([backend, "beam 4", first, s, hf_beam_s / s, same])
    print(table(["backend", "search", "first s", "steady s", "speedup vs HF", "tokens == HF"], rows))
    data = {"config": vars(args), "hf": {"first_s": hf_first, "steady_s": hf_s, "beam4_steady_s": hf_beam_s},
            "isoform": results,
            "targets": {"every": SPEED_TARGET, "best": BEST_TARGET}, "torch_threads": torch.get_num_threads()}
    print("wrote", write_results("seq2seq", data))
    plot(results)


def plot(results: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(names, [results[n]["speedup"] for n in names])
    ax.axhline(SPEED_TARGET, color="grey", linestyle="--", label="HF")
    ax.axhline(BEST_TARGET, color="green", linestyle=":", label="best target")
    ax.set_ylabel("speedup vs transformers")
    ax.set_title("T5-small, 32 in / 32 new, batch 1 (greedy, :beam4)")
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "seq2seq.png", dpi=100)


if __name__ == "__main__":
    main()
