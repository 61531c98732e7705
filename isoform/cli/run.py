"""The ``isoform run`` subcommand: generate from a prompt and stream the text to stdout.

    isoform run ./gpt2-ckpt --prompt "Once upon a time" --backend jax --max-new-tokens 40
    isoform run ./gpt2-ckpt --prompt "..." --do-sample --temperature 0.8 --top-p 0.95 --seed 0
    isoform run ./gpt2-ckpt --prompt "..." --num-beams 4          # beam search: printed when done
"""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import InputError
from ..generation.streaming import TextStreamer

#: command-line flag -> generate() option (only flags that were given are passed: the rest come from
#: the checkpoint's generation_config.json, then transformers' defaults)
OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="local checkpoint directory (with tokenizer files), hub id or isoform alias")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--backend", default="numpy", help="numpy, torch, jax, tensorflow or onnxruntime (default: numpy)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="weight dtype")
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens to generate (default: the model's, else 20)")
    p.add_argument("--do-sample", action="store_true", default=None, help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--num-beams", type=int, default=None, help="beam search with this many beams (not streamed)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--stats", action="store_true", help="print prefill time and tokens/s to stderr")


def run(args: argparse.Namespace) -> int:
    """Load tokenizer and model, generate, stream the text to stdout: prompt and continuation for a
    decoder-only model, the generated text only for an encoder-decoder (``seq2seq-lm``) one."""
    from ..model import Model
    from ..tokenizer import Tokenizer

    tokenizer = Tokenizer.load(args.model)
    model = Model.load(args.model, backend=args.backend, task="text-generation", dtype=args.dtype)
    ids = tokenizer(args.prompt, return_tensors="np")["input_ids"]
    if ids.shape[1] == 0:
        raise InputError(f"the prompt {args.prompt!r} encodes to no tokens")
    options = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    start = time.perf_counter()
    if (args.num_beams or 1) > 1:
        out = model.generate(ids, seed=args.seed, **options)
        print(tokenizer.decode(out[0], skip_special_tokens=True), flush=True)
        steps = out.shape[1] - ids.shape[1]
    else:
        streamer = TextStreamer(tokenizer, ids[0] if model.task == "causal-lm" else [], print_prompt=model.task == "causal-lm")
        steps = sum(1 for _ in model.generate(ids, seed=args.seed, stream=True, streamer=streamer, **options))
    if args.stats:
        elapsed = time.perf_counter() - start
        print(f"[{steps} tokens in {elapsed:.2f}s: {steps / elapsed:.1f} tok/s, {args.backend}]", file=sys.stderr)
    return 0

