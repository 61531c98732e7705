"""The ``isoform run`` subcommand: generate from a prompt and stream the text to stdout, show a
masked-lm's, a text or token classifier's predictions, classify an image, or transcribe a WAV file.
Without ``--task`` the task is the checkpoint's own (`default_task`: config.json's ``architectures``).

    isoform run ./gpt2-ckpt --prompt "Once upon a time" --backend jax --max-new-tokens 40
    isoform run ./gpt2-ckpt --prompt "..." --do-sample --temperature 0.8 --top-p 0.95 --seed 0
    isoform run ./gpt2-ckpt --prompt "..." --num-beams 4          # beam search: printed when done
    isoform run ./bert-mlm --text "Paris is the [MASK] of France."  # BertForMaskedLM: top-5 tokens per mask
    isoform run ./sst2 --text "a fine film"                       # ...ForSequenceClassification: top-5 labels
    isoform run ./ner --text "Ada lives in Paris"                 # ...ForTokenClassification: a label per token
    isoform run ./vit-ckpt --image cat.png                        # top-5 labels with probabilities
    isoform run ./wav2vec2-ctc --audio speech.wav                 # CTC transcription (Speech2Text: generated)

With a pipeline's name as ``--task`` the text goes through `isoform.pipeline` and its result prints as
JSON lines (a list: one line per item), as transformers' pipeline returns it:

    isoform run ./bert-mlm --task fill-mask --text "Paris is the [MASK] of France." --top-k 3
    isoform run ./ner --task ner --text "Ada lives in Paris" --aggregation-strategy simple
    isoform run ./nli --task zero-shot-classification --text "a fine match" --labels sports,politics
    isoform run ./minilm --task sentence-embedding --text "a sentence" -o emb.npy   # [dim] float32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..architectures import ArchConfig, Architecture
from ..errors import InputError
from ..generation.streaming import TextStreamer

#: command-line flag -> generate() option (only flags that were given are passed: the rest come from
#: the checkpoint's generation_config.json, then transformers' defaults)
OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty")
#: Text tasks shown besides generation: the top tokens of each mask, the top labels, each token's label.
TEXT_TASKS = ("masked-lm", "sequence-classification", "token-classification")
#: --task values run through `isoform.pipeline` (token-classification keeps run's one-label-per-token view)
PIPELINE_TASKS = ("fill-mask", "text-classification", "sentiment-analysis", "ner", "zero-shot-classification",
                  "feature-extraction", "sentence-embedding")
DTYPE_HELP = "weight dtype: float32 (default), float16, bfloat16 (or fp32, fp16, half, bf16, ...), or auto: the checkpoint's"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="local checkpoint directory (with tokenizer files), hub id or isoform alias")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", "--text", dest="prompt", metavar="TEXT",
                      help="text to continue, or to fill (masked-lm) or classify (sequence/token-classification)")
    what.add_argument("--image", help="image file to classify (prints the top 5 labels)")
    what.add_argument("--audio", help="WAV file to transcribe (PCM; stereo is averaged)")
    p.add_argument("--task", default=None, help="task head to run (default: the checkpoint's, from config.json's "
                   f"architectures; generation for an LM), or a pipeline printing JSON: {', '.join(PIPELINE_TASKS)}")
    p.add_argument("--backend", default="numpy", help="numpy, torch, jax, tensorflow or onnxruntime (default: numpy)")
    p.add_argument("--dtype", default="float32", help=DTYPE_HELP)
    p.add_argument("--device", default=None, help="torch: cuda, cuda:1, ...; jax: gpu, gpu:0, ... (default: the CPU)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens to generate (default: the model's, else 20)")
    p.add_argument("--do-sample", action="store_true", default=None, help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--num-beams", type=int, default=None, help="beam search with this many beams (not streamed)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--stats", action="store_true", help="print prefill time and tokens/s to stderr")
    p.add_argument("--labels", default=None, help="zero-shot-classification: candidate labels, comma-separated")
    p.add_argument("--aggregation-strategy", default=None, help="ner: none, simple, first, average or max")
    p.add_argument("-o", "--output", default=None, help="feature-extraction / sentence-embedding: save the "
                   "embeddings to this .npy file (else they print as JSON)")


def default_task(arch: Architecture, config: Mapping[str, Any], shown: Sequence[str | None], fallback: str) -> str:
    """The task `isoform run` loads without ``--task``: that of the checkpoint's class (config.json's first
    ``architectures`` entry, looked up in the architecture's ``tasks`` and ``checkpoint_classes``) when
    run can show it (``shown``), else ``fallback`` (what run loads for that input whatever the class)."""
    classes = {cls: task for task, cls in arch.tasks.items()} | arch.checkpoint_classes
    task = classes.get(next(iter(config.get("architectures") or []), None), fallback)
    return task if task is not None and task in shown else fallback


def run(args: argparse.Namespace) -> int:
    """Load tokenizer (or processor) and model for the checkpoint's task (or ``--task``) and print what
    it makes of the input. Generation streams the text to stdout: prompt and continuation for a
    decoder-only model, the generated text only for an encoder-decoder (``seq2seq-lm``) one."""
    from ..architectures import architecture_for, read_config
    from ..hub import resolve
    from ..model import Model
    from ..tokenizer import Tokenizer

    directory = resolve(args.model)
    config = read_config(directory)
    arch = architecture_for(config)
    if args.image is not None:
        return classify_image(args, directory, args.task or "image-classification")
    if args.audio is not None:
        fallback = "ctc" if "ctc" in arch.tasks else "text-generation"
        shown = ("ctc", "audio-classification", arch.generative_task)
        return transcribe(args, directory, args.task or default_task(arch, config, shown, fallback))
    if args.task in PIPELINE_TASKS:
        return run_pipeline(args, directory)
    task = args.task or default_task(arch, config, (arch.generative_task, *TEXT_TASKS), "text-generation")
    if task == "text-generation" and arch.generative_task is None:
        named = ", ".join(config.get("architectures") or []) or "of no class (config.json names no architectures)"
        raise InputError(f"isoform run --text shows text generation and the {', '.join(TEXT_TASKS)} heads; this "
                         f"{arch.model_type} checkpoint is {named}, which generates no text: pass --task with a head it has")
    if task not in ("text-generation", arch.generative_task, *TEXT_TASKS):
        raise InputError(f"isoform run --text shows text generation, {', '.join(TEXT_TASKS)} and the pipelines "
                         f"{', '.join(PIPELINE_TASKS)}, not task {task!r}")
    tokenizer = Tokenizer.load(directory)
    if task in TEXT_TASKS:
        return predict_text(args, directory, task, tokenizer)
    model = Model.load(directory, backend=args.backend, task="text-generation", dtype=args.dtype, device=args.device)
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


def run_pipeline(args: argparse.Namespace, directory: Path) -> int:
    """Run ``args.prompt`` through the ``args.task`` pipeline and print its result as JSON lines, or save
    the embeddings of feature-extraction / sentence-embedding to ``args.output`` (``.npy``)."""
    from ..pipelines import pipeline

    options: dict[str, Any] = {}
    if args.task == "zero-shot-classification":
        if not args.labels:
            raise InputError("zero-shot-classification needs --labels (comma-separated candidate labels)")
        options["candidate_labels"] = args.labels
    if args.aggregation_strategy is not None:
        options["aggregation_strategy"] = args.aggregation_strategy
    if args.top_k is not None:
        options["top_k"] = args.top_k
    embeds = args.task in ("feature-extraction", "sentence-embedding")
    if args.output is not None and not embeds:
        raise InputError("-o/--output saves embeddings: it goes with --task feature-extraction or sentence-embedding")
    if args.task == "feature-extraction":
        options["return_tensors"] = True
    pipe = pipeline(args.task, model=directory, backend=args.backend, dtype=args.dtype, device=args.device)
    result = pipe(args.prompt, **options)
    if embeds and args.output is not None:
        try:
            np.save(args.output, np.asarray(result, dtype=np.float32))
        except OSError as e:
            raise InputError(f"cannot write {args.output}: {e}") from None
        return 0
    if embeds:
        result = np.asarray(result).tolist()
    for item in result if isinstance(result, list) and not embeds else [result]:
        print(json.dumps(item, ensure_ascii=False))
    return 0


def predict_text(args: argparse.Namespace, directory: Path, task: str, tokenizer: Any) -> int:
    """Print a masked-lm's top 5 tokens for each mask token of ``args.prompt`` (as transformers'
    fill-mask pipeline), a sequence classifier's top 5 labels, or a token classifier's label per token."""
    from ..model import Model

    model = Model.load(directory, backend=args.backend, task=task, dtype=args.dtype, device=args.device)
    enc = tokenizer(args.prompt, return_tensors="np", return_special_tokens_mask=True)
    ids, added = enc["input_ids"][0], enc.pop("special_tokens_mask")[0]
    masks = np.flatnonzero(ids == tokenizer.mask_token_id) if task == "masked-lm" else []
    if task == "masked-lm" and not len(masks):
        raise InputError(f"the text has no mask token {tokenizer.mask_token!r} to fill")
    names = {s.name for s in model.inputs.specs}
    logits = model(**{k: v for k, v in enc.items() if k in names}).numpy()["logits"][0].astype(np.float64)
    if task == "sequence-classification":
        print_labels(logits, model.config)
    for n, i in enumerate(masks):
        if len(masks) > 1:
            print(f"{tokenizer.mask_token} {n + 1}:")
        probs = _softmax(logits[i])
        for j in np.argsort(-probs, kind="stable")[:5]:
            print(f"{probs[j]:.4f}  {tokenizer.decode([int(j)])}")
    if task == "token-classification":
        labels = model.config.id2label or {}
        for token, template, row in zip(tokenizer.convert_ids_to_tokens(ids), added, logits):
            if not template:  # the tokens the text gave, not [CLS]/[SEP] (as transformers' pipeline)
                probs = _softmax(row)
                print(f"{token}  {labels.get(str(probs.argmax()), f'LABEL_{probs.argmax()}')}  {probs.max():.4f}")
    return 0


def print_labels(logits: np.ndarray, config: ArchConfig, k: int = 5) -> None:
    """The top ``k`` labels (``id2label``) of one row of classifier logits with their scores, as
    transformers' classification pipelines score them: sigmoid for multi-label or one-label heads,
    softmax otherwise, the raw value for regression."""
    problem = config.extra("problem_type")
    if problem == "regression":
        scores = logits
    elif problem == "multi_label_classification" or len(logits) == 1:
        scores = 1 / (1 + np.exp(-logits))
    else:
        scores = _softmax(logits)
    labels = config.id2label or {}
    for i in np.argsort(-scores, kind="stable")[:k]:
        print(f"{scores[i]:.4f}  {labels.get(str(i), f'LABEL_{i}')}")  # config.json's keys are strings


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def classify_image(args: argparse.Namespace, directory: Path, task: str) -> int:
    """Print the top-5 labels (``id2label``) of an image-classification model for ``args.image``."""
    from PIL import Image

    from ..model import Model
    from ..processing import ImageProcessor

    model = Model.load(directory, backend=args.backend, task=task, dtype=args.dtype, device=args.device)
    try:
        image = Image.open(args.image)
    except OSError as e:
        raise InputError(f"cannot read image {args.image}: {e}") from None
    logits = model(**ImageProcessor.load(directory)(image.convert("RGB"), return_tensors="np")).numpy()["logits"][0]
    print_labels(logits.astype(np.float64), model.config)
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


def transcribe(args: argparse.Namespace, directory: Path, task: str) -> int:
    """Transcribe ``args.audio``: CTC (greedy argmax, collapsed) or, for a speech seq2seq model, generate;
    an audio classifier prints its top-5 labels."""
    from ..model import Model
    from ..processing import Processor

    audio, rate = read_wav(args.audio)
    processor = Processor.from_directory(directory)
    inputs = processor(audio=audio, sampling_rate=rate, return_tensors="np")
    model = Model.load(directory, backend=args.backend, task=task, dtype=args.dtype, device=args.device)
    if task == "audio-classification":
        print_labels(model(**inputs).numpy()["logits"][0].astype(np.float64), model.config)
    elif task == "ctc":
        print(processor.batch_decode(model(**inputs).numpy()["logits"].argmax(-1))[0])
    else:
        ids = model.generate(**inputs, **{k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None})
        print(processor.batch_decode(ids, skip_special_tokens=True)[0])
    return 0
