"""BERT-base forward on every isoform backend against `transformers` (PyTorch, SDPA) in the same run,
MiniLM load time, and peak RSS while loading BERT-base.

    python -m bench.encoder [--model bert-base|deberta-v3-base] [--backends torch jax] [--batches 1 8] [--seq 128]
                            [--skip speed load rss]

- speed: a random-init `BertConfig()` checkpoint (bert-base, f32) saved once in a temp directory;
  transformers with SDPA attention where it has it (DeBERTa has eager only);
  random ids with the last row padded; steady-state seconds per call (`time_call` median) and the
  first call (`m.warmup`: compiling, for jitted backends) separately; ratio isoform / HF of the
  medians and of the minima (the minimum is what survives load from other processes); parity
  (max abs difference of every output vs HF, same inputs, same run). Targets: every backend <= 1.10x
  HF, the best <= 0.80x, onnxruntime <= 0.65x; numpy is the reference and has no target.
  ``--model deberta-v3-base``: the same for a DeBERTa-v3-base-shaped `DebertaV2Config` (speed only,
  written to bench/results/encoder-deberta-v3-base.json).
- load: `isoform.Model.load("minilm", backend=...)` vs `transformers.AutoModel.from_pretrained(dir)`
  (the packaged all-MiniLM-L6-v2; warm page cache, frameworks already imported). Target <= 1.0x.
- rss: in a fresh subprocess per backend (and for HF): import the framework (and convert one small
  array, which starts its runtime: the JAX CPU client, TF's eager context), reset the peak
  (`/proc/self/clear_refs`), load the BERT-base checkpoint, read the peak (`VmHWM`). Reported as
  (peak - baseline) / checkpoint size. Target <= 1.2.

Prints tables, writes bench/results/encoder.json and bench/results/encoder.png (bar charts).
Thread counts are left at each framework's default and recorded in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.common import RESULTS, first_call, random_checkpoint, table, time_call, write_results

SPEED_TARGET, BEST_TARGET, ORT_TARGET, LOAD_TARGET, RSS_TARGET, PARITY = 1.10, 0.80, 0.65, 1.0, 1.2, 1e-4


MODELS = {
    "bert-base": ("BertModel", "BertConfig", {}),
    "deberta-v3-base": ("DebertaV2Model", "DebertaV2Config", dict(
        vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
        pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0, max_relative_positions=-1)),
}


def make_inputs(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[-1, seq * 3 // 4:] = 0  # the last row is padded
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _sync(name: str, out: Any) -> Any:
    if name == "jax":
        import jax

        jax.block_until_ready(dict(out))
    return out


def thread_counts() -> dict[str, Any]:
    import torch

    counts: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch_intra_op": torch.get_num_threads(),
                              "torch_inter_op": torch.get_num_interop_threads()}
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        counts["tf_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads() or "default (all cores)"
        counts["tf_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads() or "default (all cores)"
    if "onnxruntime" in sys.modules:
        from isoform.backends.onnxruntime import session_options

        counts["ort_intra_op"] = session_options().intra_op_num_threads
    if "jax" in sys.modules:
        counts["jax"] = "XLA CPU default (Eigen pool over all cores)"
    return counts


# -- speed --------------------------------------------------------------------------------------------
def interleaved(fns: dict[str, Callable[[], Any]], *, rounds: int = 7, min_time: float = 0.2) -> dict[str, dict[str, float]]:
    """`time_call` for several functions at once: each round times every function (order rotated) for
    its calibrated loop count, so load from other processes on a shared machine hits all of them
    alike; returns min/median/max seconds per call over the rounds."""
    numbers = {name: max(1, round(min_time / time_call(fn, repeat=1, min_time=min_time)["median"]))
               for name, fn in fns.items()}
    runs: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in tqdm(range(rounds), desc="rounds", leave=False):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(numbers[name]):
                fns[name]()
            runs[name].append((time.perf_counter() - start) / numbers[name])
    return {name: {"min": min(v), "median": statistics.median(v), "max": max(v)} for name, v in runs.items()}


def speed(ckpt: Path, names: list[str], batches: list[int], seq: int, rounds: int) -> dict[str, Any]:
    """Load HF and every backend, then per batch size: first call, parity, interleaved steady state."""
    import torch
    import transformers

    import isoform

    try:
        hf = transformers.AutoModel.from_pretrained(ckpt, attn_implementation="sdpa").eval()
    except ValueError:  # DeBERTa has only transformers' eager attention
        hf = transformers.AutoModel.from_pretrained(ckpt).eval()
    models, load_s = {}, {}
    for name in tqdm(names, desc=f"load {ckpt.name}"):
        start = time.perf_counter()
        models[name] = isoform.Model.load(ckpt, backend=name)
        load_s[name] = time.perf_counter() - start
    results: dict[str, Any] = {"hf": {}, **{name: {} for name in names}}
    for b in tqdm(batches, desc="batch sizes"):
        x = make_inputs(b, seq, hf.config.vocab_size)
        tin = {k: torch.from_numpy(v) for k, v in x.items()}

        def run_hf(tin: dict = tin) -> Any:
            with torch.inference_mode():
                return hf(**tin)

        first = first_call(run_hf)
        out = run_hf()
        expected = {k: v.numpy() for k, v in out.items()}
        fns = {"hf": run_hf}
        results["hf"][b] = {"first_s": first}
        for name, m in models.items():
            compile_s = m.warmup(b, seq)
            got = _sync(name, m(**x)).numpy()
            diff = max(float(np.abs(got[k] - expected[k]).max()) for k in expected)
            results[name][b] = {"load_s": load_s[name], "first_s": compile_s, "max_abs_diff": diff}
            fns[name] = lambda m=m, name=name, x=x: _sync(name, m(**x))
        reference = fns.pop("numpy", None)  # far slower, no target: timed on its own
        for name, t in interleaved(fns, rounds=rounds).items():
            results[name][b]["steady_s"] = t
        if reference is not None:
            results["numpy"][b]["steady_s"] = time_call(reference, repeat=3)
        for name in names:
            ours, theirs = results[name][b]["steady_s"], results["hf"][b]["steady_s"]
            results[name][b]["ratio"] = ours["median"] / theirs["median"]
            results[name][b]["ratio_min"] = ours["min"] / theirs["min"]  # robust to load from other processes
    return results


# -- load time ----------------------------------------------------------------------------------------
def load_times(names: list[str]) -> dict[str, Any]:
    import transformers

    import isoform
    from isoform.hub import resolve

    directory = resolve("minilm")
    results = {}
    for name in tqdm(["hf", *names], desc="load"):
        if name == "hf":
            fn = lambda: transformers.AutoModel.from_pretrained(directory)
        else:
            fn = lambda name=name: isoform.Model.load("minilm", backend=name)
        results[name] = time_call(fn, repeat=5, min_time=0.0)
    for name in names:
        results[name]["ratio"] = results[name]["median"] / results["hf"]["median"]
    return results


# -- peak RSS -----------------------------------------------------------------------------------------
def _status(field: str) -> int:
    """A `/proc/self/status` memory field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def rss_child(name: str, ckpt: str) -> None:
    """Run in a fresh process: import, reset the peak, load, print {baseline, peak} as JSON."""
    if name == "hf":
        import torch  # noqa: F401
        import transformers

        load = lambda: transformers.AutoModel.from_pretrained(ckpt)
    else:
        import isoform
        from isoform.ir.dtypes import DType

        be = isoform.backends.get(name)  # imports the framework; converting a small array starts its runtime
        be.to_native(np.frombuffer(np.ones(4097, np.float32).tobytes()[4:], np.float32), DType.f32)
        load = lambda: isoform.Model.load(ckpt, backend=name)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    baseline = _status("VmRSS")
    model = load()
    print(json.dumps({"baseline": baseline, "peak": _status("VmHWM"), "after": _status("VmRSS"),
                      "model": repr(model)[:80]}))


def peak_rss(ckpt: Path, names: list[str]) -> dict[str, Any]:
    size = (ckpt / "model.safetensors").stat().st_size
    results = {}
    for name in tqdm(["hf", *names], desc="rss"):
        proc = subprocess.run([sys.executable, "-m", "bench.encoder", "--rss-child", name, str(ckpt)],
                              capture_output=True, text=True, cwd=Path(__file__).parent.parent)
        if proc.returncode:
            raise RuntimeError(f"rss child {name} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["ratio"] = (r["peak"] - r["baseline"]) / size
        results[name] = r
    return {"checkpoint_bytes": size, "results": results}


# -- report -------------------------------------------------------------------------------------------
def report(data: dict[str, Any]) -> None:
    if "speed" in data:
        sp, rows = data["speed"], []
        for name, per in sp.items():
            for b, r in per.items():
                if name == "hf":
                    rows.append(["transformers", b, r["steady_s"]["median"] * 1e3, r["steady_s"]["min"] * 1e3,
                                 r["first_s"], "1", "1", "-", "-"])
                    continue
                target = "ref" if name == "numpy" else f"<={ORT_TARGET if name == 'onnxruntime' else SPEED_TARGET}"
                rows.append([name, b, r["steady_s"]["median"] * 1e3, r["steady_s"]["min"] * 1e3, r["first_s"],
                             f"{r['ratio']:.2f}", f"{r['ratio_min']:.2f}", target, f"{r['max_abs_diff']:.1e}"])
        print(table(["backend", "batch", "median ms", "min ms", "first call s", "ratio (median)", "ratio (min)",
                     "target", "max |diff|"], rows))
    if "load" in data:
        ld = data["load"]
        print(table(["backend", "MiniLM load ms", "ratio vs HF (<=1.0)"],
                    [["transformers", ld["hf"]["median"] * 1e3, "1"]]
                    + [[n, r["median"] * 1e3, f"{r['ratio']:.2f}"] for n, r in ld.items() if n != "hf"]))
    if "rss" in data:
        rs = data["rss"]
        mb = 2**20
        print(f"checkpoint: {rs['checkpoint_bytes'] / mb:.0f} MiB")
        print(table(["backend", "baseline MiB", "peak MiB", "after MiB", "(peak-base)/ckpt (<=1.2)"],
                    [["transformers" if n == "hf" else n, r["baseline"] / mb, r["peak"] / mb, r["after"] / mb,
                      f"{r['ratio']:.2f}"] for n, r in rs["results"].items()]))


def chart(data: dict[str, Any], path: Path, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("speed", "load", "rss") if k in data]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "speed":
            names = [n for n in data["speed"] if n not in ("hf", "numpy")]
            batches = list(data["speed"]["hf"])
            width = 0.8 / len(batches)
            for i, b in enumerate(batches):
                ax.bar([j + i * width for j in range(len(names))], [data["speed"][n][b]["ratio_min"] for n in names],
                       width, label=f"batch {b}")
            ax.set_xticks([j + width * (len(batches) - 1) / 2 for j in range(len(names))], names)
            ax.axhline(SPEED_TARGET, color="red", ls="--", lw=1, label=f"target {SPEED_TARGET}")
            ax.axhline(BEST_TARGET, color="green", ls=":", lw=1, label=f"best {BEST_TARGET}")
            ax.set_title(f"{model} forward, min time / transformers (numpy ref. omitted)")
        else:
            src = data["load"] if panel == "load" else data["rss"]["results"]
            names = [n for n in src if n != "hf"]
            values = [src[n]["ratio"] for n in names]
            if panel == "rss":
                names, values = ["transformers", *names], [src["hf"]["ratio"], *values]
            ax.bar(names, values)
            target = LOAD_TARGET if panel == "load" else RSS_TARGET
            ax.axhline(target, color="red", ls="--", lw=1, label=f"target {target}")
            ax.set_title("MiniLM load time / transformers" if panel == "load"
                         else "BERT-base load: (peak RSS - baseline) / checkpoint")
        ax.tick_params(axis="x", labelrotation=20)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--rss-child":
        return rss_child(sys.argv[2], sys.argv[3])
    import isoform

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=list(MODELS), default="bert-base")
    ap.add_argument("--backends", nargs="*", default=isoform.backends.available())
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--skip", nargs="*", default=[], choices=["speed", "load", "rss"])
    args = ap.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    model_class, config_class, config = MODELS[args.model]
    ckpt = random_checkpoint(f"{args.model}-f32", model_class, config_class, **config)
    data: dict[str, Any] = {"model": f"{args.model} random init ({config_class}({config or ''})), f32",
                            "seq": args.seq, "batches": args.batches, "backends": args.backends}
    bert = args.model == "bert-base"  # load time and RSS are measured on BERT only
    if "speed" not in args.skip:
        data["speed"] = speed(ckpt, args.backends, args.batches, args.seq, args.rounds)
    if "load" not in args.skip and bert:
        data["load"] = load_times(args.backends)
    if "rss" not in args.skip and bert:
        data["rss"] = peak_rss(ckpt, args.backends)
    data["threads"] = thread_counts()
    data["load_average_1_5_15min"] = os.getloadavg()
    report(data)
    name = "encoder" if bert else f"encoder-{args.model}"
    path = write_results(name, data)
    chart(data, RESULTS / f"{name}.png", args.model)
    print(f"wrote {path} and {RESULTS / f'{name}.png'}")


if __name__ == "__main__":
    main()
