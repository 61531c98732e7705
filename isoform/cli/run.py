"""The ``isoform run`` subcommand: generate from a prompt and stream the text to stdout, classify an
image, or transcribe a WAV file.

    isoform run ./gpt2-ckpt --prompt "Once upon a time" --backend jax --max-new-tokens 40
    isoform run ./gpt2-ckpt --prompt "..." --do-sample --temperature 0.8 --top-p 0.95 --seed 0
    isoform run ./gpt2-ckpt --prompt "..." --num-beams 4          # beam search: printed when done
    isoform run ./vit-ckpt --image cat.png                        # top-5 labels with probabilities
    isoform run ./wav2vec2-ctc --audio speech.wav                 # CTC transcription (Speech2Text: generated)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave

import numpy as np

from ..errors import InputError
from ..generation.streaming import TextStreamer

#: command-line flag -> generate() option (only flags that were given are passed: the rest come from
#: the checkpoint's generation_config.json, then transformers' defaults)
OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="local checkpoint directory (with tokenizer files), hub id or isoform alias")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="text to continue")
    what.add_argument("--image", help="image file to classify (prints the top 5 labels)")
    what.add_argument("--audio", help="WAV file to transcribe (PCM; stereo is averaged)")
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

    if args.image is not None:
        return classify_image(args)
    if args.audio is not None:
        return transcribe(args)
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



def classify_image(args: argparse.Namespace) -> int:
    """Print the top-5 labels (``id2label``) of an image-classification model for ``args.image``."""
    from PIL import Image

    from ..model import Model
    from ..processing import ImageProcessor

    model = Model.load(args.model, backend=args.backend, task="image-classification", dtype=args.dtype)
    try:
        image = Image.open(args.image)
    except OSError as e:
        raise InputError(f"cannot read image {args.image}: {e}") from None
    logits = model(**ImageProcessor.load(args.model)(image.convert("RGB"), return_tensors="np")).numpy()["logits"][0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    labels = model.config.id2label or {}
    for i in np.argsort(-probs)[:5]:
        print(f"{probs[i]:.4f}  {labels.get(str(i), f'LABEL_{i}')}")  # config.json's keys are strings
    return 0


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sampling rate of a PCM WAV file (standard library)."""
    try:
        with wave.open(path, "rb") as f:
            width, channels, rate, raw = f.getsampwidth(), f.getnchannels(), f.getframerate(), f.readframes(f.getnframes())
    except (OSError, EOFError, wave.Error) as e:
        raise InputError(f"cannot read WAV file {path}: {e}") from None
    if width not in (1, 2, 4):
        raise InputError(f"{path}: {8 * width}-bit samples are not supported (8, 16 or 32-bit PCM)")
    kind = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    x = np.frombuffer(raw, kind).astype(np.float32)
    x = (x - 128) / 128 if width == 1 else x / float(2 ** (8 * width - 1))
    return x.reshape(-1, channels).mean(1), rate


def transcribe(args: argparse.Namespace) -> int:
    """Transcribe ``args.audio``: CTC (greedy argmax, collapsed) or, for a speech seq2seq model, generate."""
    from ..hub import resolve
    from ..model import Model, architecture_for
    from ..processing import Processor

    audio, rate = read_wav(args.audio)
    directory = resolve(args.model)
    processor = Processor.from_directory(directory)
    inputs = processor(audio=audio, sampling_rate=rate, return_tensors="np")
    ctc = "ctc" in architecture_for(json.loads((directory / "config.json").read_text())).tasks
    model = Model.load(directory, backend=args.backend, task="ctc" if ctc else "text-generation", dtype=args.dtype)
    if ctc:
        print(processor.batch_decode(model(**inputs).numpy()["logits"].argmax(-1))[0])
    else:
        ids = model.generate(**inputs, **{k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None})
        print(processor.batch_decode(ids, skip_special_tokens=True)[0])
    return 0
