"""The ``isoform`` command. Subcommands register in `COMMANDS`; each adds its arguments to its own
subparser and is run with the parsed arguments.

    isoform export bert-base --task masked-lm -o model.onnx [--dtype float16] [--opset 23]
    isoform export ./gpt2-ckpt --task causal-lm --with-past -o gpt2-onnx/     # Optimum's layout
    isoform run ./gpt2-ckpt --prompt "Once upon a time" --backend jax --max-new-tokens 40
    isoform compare ./bert-ckpt --backends numpy jax [--dtype float32 bfloat16] [--against transformers]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..architectures.inputs import sample_inputs
from ..errors import IsoformError
from . import run

#: Parity tolerance (max abs diff) of the exported model against the torch backend, per dtype; for an
#: output whose largest magnitude m exceeds 1, the tolerance is this times m.
TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 1e-1}


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="local checkpoint directory, hub id or isoform alias")
    p.add_argument("--task", default=None, help="task head (masked-lm, sequence-classification, ...); default: bare model")
    p.add_argument("-o", "--output", type=Path, default=Path("model.onnx"), help="ONNX file to write (default: model.onnx)")
    p.add_argument("--dtype", default="float32", help=run.DTYPE_HELP)
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: newest the installed onnxruntime runs)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check against the torch backend")
    p.add_argument("--with-past", action="store_true",
                   help="causal-lm / seq2seq-lm: write Optimum's layout with KV caches into the directory -o "
                        "(model.onnx, or encoder_model.onnx + decoder_model.onnx + decoder_with_past_model.onnx)")


def _export(args: argparse.Namespace) -> int:
    from .. import backends
    from ..model import Model

    model = Model.load(args.model, backend="numpy", task=args.task, dtype=args.dtype)
    if args.with_past:
        return _export_with_past(model, args)
    path = model.export_onnx(args.output, opset=args.opset)
    size = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
    g = model.graph
    import onnx

    opset = onnx.load(path, load_external_data=False).opset_import[0].version
    print(f"wrote {path} ({size / 1e6:.1f} MB, opset {opset}): {model.arch.model_type} {args.task or 'base model'}, "
          f"{model.dtype}")
    print("  inputs:  " + ", ".join(f"{v.name}{list(v.shape)} {v.dtype}" for v in g.inputs))
    print("  outputs: " + ", ".join(f"{k}{list(g.values[v].shape)} {g.values[v].dtype}" for k, v in g.outputs.items()))
    if args.no_check:
        return 0
    if "onnxruntime" not in backends.available():
        print("parity check skipped: onnxruntime is not installed (pip install 'isoform[onnx]')")
        return 0
    reference = "torch" if "torch" in backends.available() else "numpy"
    return _parity(model.to(reference) if reference != "numpy" else model, path, reference, TOLERANCE[model.dtype])


def _export_with_past(model, args: argparse.Namespace) -> int:
    """``--with-past``: the Optimum directory (with the checkpoint's tokenizer files, if it has them);
    checked by greedy generation from the files against the model's own."""
    from ..hub import resolve
    from ..optimum import OptimumGenerator

    source = resolve(args.model)
    tokenizer = source if (source / "tokenizer_config.json").exists() or (source / "tokenizer.json").exists() else None
    directory = model.export_onnx(args.output, opset=args.opset, use_cache=True, tokenizer=tokenizer)
    print(f"wrote {directory}: " + ", ".join(sorted(f.name for f in directory.iterdir() if not f.name.startswith("."))))
    if args.no_check:
        return 0
    ids = np.random.default_rng(0).integers(0, model.arch.vocab_size, (2, 5))
    got = OptimumGenerator.load(directory).generate(ids, max_new_tokens=8, do_sample=False)
    ok = np.array_equal(got, model.generate(ids, max_new_tokens=8, do_sample=False))
    print(f"greedy generation from the files vs the numpy backend (2 prompts x 8 tokens): {'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def _parity(model, path: Path, reference: str, tol: float) -> int:
    """Run the exported file in ONNX Runtime and `model` on the same sample inputs; 0 if they agree."""
    import onnxruntime as ort

    sizes, inputs = sample_inputs(model.arch, model.task)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name].astype(np.float32 if "float" in i.type else np.int64) for i in session.get_inputs()}
    got = _run(session, feeds)
    want = model(**inputs).numpy()
    diffs = {k: float(np.abs(got[k].astype(np.float64) - want[k].astype(np.float64)).max()) for k in want}
    # float rounding grows with the values: outputs larger than 1 get `tol` relative to their largest value
    allowed = {k: tol * max(1.0, float(np.abs(want[k].astype(np.float64)).max())) for k in want}
    worst = max(diffs, key=lambda k: diffs[k] / allowed[k])
    ok = all(diffs[k] <= allowed[k] for k in want)
    shape = ", ".join(f"{k} {v}" for k, v in sizes.items())
    print(f"parity vs the {reference} backend ({shape}): max abs diff {diffs[worst]:.2e} ({worst}), "
          f"tolerance {allowed[worst]:.2g}: {'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def _run(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The session's outputs by name; bfloat16 ones, which ORT's Python API cannot convert to NumPy,
    are copied out of their buffers as ml_dtypes.bfloat16."""
    import ctypes

    import ml_dtypes
    import onnxruntime as ort

    values = session.run_with_ort_values(None, {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in feeds.items()})
    out = {}
    for o, v in zip(session.get_outputs(), values):
        if v.data_type() != "tensor(bfloat16)":
            out[o.name] = v.numpy()
            continue
        n = int(np.prod(v.shape()))
        bits = np.frombuffer((ctypes.c_uint16 * n).from_address(v.data_ptr()), np.uint16) if n else np.zeros(0, np.uint16)
        out[o.name] = bits.copy().view(ml_dtypes.bfloat16).reshape(v.shape())
    return out


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="local checkpoint directory, hub id or isoform alias")
    p.add_argument("--backends", nargs="+", default=["numpy", "torch"],
                   help="two backends (or one with two --dtype values); default: numpy torch")
    p.add_argument("--task", default=None, help="task head; default: bare model")
    p.add_argument("--dtype", nargs="+", default=None, help="compute dtype of each run (one for both, or one per run)")
    p.add_argument("--text", nargs="+", default=None, help="texts to tokenize as the input (default: random inputs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--against", choices=["transformers"], default=None,
                   help="compare layer outputs with transformers' hidden_states instead of a second backend")
    p.add_argument("--every-node", action="store_true", help="compare every value in one pass (slower)")
    p.add_argument("--atol", type=float, default=None)
    p.add_argument("--rtol", type=float, default=None)


def _compare(args: argparse.Namespace) -> int:
    from ..comparison import compare, compare_with_transformers
    from ..hub import resolve
    from ..model import Model

    directory = resolve(args.model)
    dtypes = args.dtype or [None]
    first_dtype = dtypes[0] or "float32"
    model = Model.load(directory, backend=args.backends[0], task=args.task, dtype=first_dtype)
    inputs = None
    if args.text:
        from ..tokenizer import Tokenizer

        inputs = dict(Tokenizer.load(directory)(args.text, padding=True, return_tensors="np"))
        inputs = {k: v for k, v in inputs.items() if k in {s.name for s in model.inputs.specs}}
    if args.against:
        report = compare_with_transformers(model, directory, inputs=inputs, seed=args.seed, atol=args.atol, rtol=args.rtol)
    else:
        report = compare(model, args.backends, dtypes=dtypes * 2 if len(dtypes) == 1 else dtypes, inputs=inputs,
                         seed=args.seed, atol=args.atol, rtol=args.rtol, every_node=args.every_node)
    print(report)
    return 0 if report.ok else 1


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "export": ("export a model to ONNX and check it against the torch backend", _export_args, _export),
    "run": ("generate text from a prompt, streamed to stdout", run.add_arguments, run.run),
    "compare": ("run one model on two backends (or dtypes) and show the first node where they diverge",
                _compare_args, _compare),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``isoform`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(prog="isoform", description="Run Hugging Face transformer models on any backend.")
    parser.add_argument("--version", action="version", version=f"isoform {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except IsoformError as e:
        print(f"isoform {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
