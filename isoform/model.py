"""`Model`: a checkpoint's graph, compiled on one backend with its weights.

    m = Model.load("./ckpt", backend="jax", task="masked-lm")
    out = m(input_ids=ids, attention_mask=mask)      # ModelOutput of backend-native arrays
    out.numpy()["logits"]
    m.to("torch").save("./out")                      # same weights, another backend; HF layout

Loading order (everything that can fail does so before weights are read): resolve the name,
read ``config.json``, pick the architecture by ``model_type`` and validate the config, check the
task, get the backend (and its ``device``), read ``dtype="auto"`` off the config or the headers, build the
graph, check every checkpoint tensor name and shape from the headers, then stream tensors into the backend.

Sequence-length buckets: backends that compile per input shape (``Backend.static_shapes``: JAX)
would recompile for every new length, so for architectures that are padding-safe `__call__` pads
the sequence up to a multiple of ``bucket`` (default 32 on those backends, None elsewhere: torch
runs eagerly, TensorFlow and ONNX Runtime take dynamic shapes) with masked padding, and slices
per-token outputs back. ``m.bucket = None`` turns it off; ``m.warmup(batch, seq)`` compiles ahead.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import architectures, backends
from .architectures import FLOAT, ArchConfig, Architecture, Inputs
from .backends import Backend, Program
from .errors import ConfigError, InputError
from .generation.config import GenerationConfig
from .generation.decoder import Decoder, DecodingGraphs
from .hub import resolve
from .ir import Graph
from .ir.builder import checking_params
from .staging import moved, staged_directory
from .weights import auto_dtype, load_params, open_checkpoint, save_params, source_check
from .weights.dtypes import check_float_dtype
from .weights.saving import checkpoint_files


class ModelOutput(dict):
    """Outputs by their transformers names (``last_hidden_state``, ``logits``, ...) as the backend's
    native arrays; ``.numpy()`` converts them all; attribute access works too (``out.logits``)."""

    def __init__(self, values: Mapping[str, Any], backend: Backend):
        super().__init__(values)
        self._backend = backend

    def numpy(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(self._backend.to_numpy(v)) for k, v in self.items()}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"output {name!r} does not exist; outputs are {sorted(self)}") from None


class Model:
    """A model of one architecture and task on one backend. Build it with `Model.load`."""

    def __init__(self, arch: Architecture, task: str | None, graphs: Mapping[str, Graph], program: Program):
        self.arch = arch
        self.task = task
        self.graphs = dict(graphs)  # the task's graph set: "forward", plus "decoder" (+ "encoder") to generate
        self.graph = graphs["forward"]
        self.program = program  # "forward", compiled
        self.backend: Backend = program.backend
        self.bucket: int | None = 32 if self.backend.static_shapes else None
        self.generation_config: GenerationConfig | None = None  # set by load from generation_config.json
        self.inputs: Inputs = arch.input_specs(task)  # what __call__ takes, checked once there
        self._input_dtypes = {v.name: v.dtype.numpy for v in self.graph.inputs}
        self._seq_axes = {name: _seq_axis(self.graph, value) for name, value in self.graph.outputs.items()}
        self._generation: DecodingGraphs | None = None  # the generation graphs, compiled once
        self._idle: list[Decoder] = []  # decoders free for the next generate() call (one call owns one at a time)
        self._compiling = threading.Lock()  # the generation graphs are compiled once, also under threads

    @property
    def config(self) -> ArchConfig:
        return self.arch.config

    @property
    def dtype(self) -> str:
        return next((p.dtype.numpy.name for p in self.graph.params if p.dtype.is_float), "float32")

    def __repr__(self) -> str:
        return (f"<isoform.Model {self.arch.model_type} task={self.task!r} backend={self.backend.name!r} "
                f"params={sum(int(np.prod(p.shape)) for p in self.graph.params):,}>")

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | os.PathLike[str], backend: str | Backend = "numpy", task: str | None = None,
             dtype: Any = "float32", *, device: Any = None, progress: bool | None = None, **config: Any) -> Model:
        """Load a checkpoint (local directory, isoform alias or hub id) for ``task`` (None: the
        bare model, like ``AutoModel``; ``"text-generation"``: the architecture's generative task,
        ``causal-lm`` or ``seq2seq-lm``) onto ``backend`` with float weights in ``dtype``. Keyword
        arguments override keys the architecture's config declares, as ``from_pretrained(**kwargs)``
        does (e.g. ``interpolate_pos_encoding=True`` for ViT/DeiT at other image sizes).

        ``dtype``: ``"float32"`` (the default, whatever the checkpoint holds), ``"float16"``,
        ``"bfloat16"``, their short names (``"fp16"``, ``"half"``, ``"bf16"``, ...), NumPy or torch
        dtypes (``torch.float16``), or ``"auto"``: the checkpoint's, as transformers decides it
        (`isoform.weights.auto_dtype`). ``device``: where the parameters live and the model runs, on
        backends that have devices (torch: ``"cuda"``, ``"cuda:1"``, a `torch.device`; jax: a
        `jax.Device` or ``"gpu:0"``); the others take None or ``"cpu"``. ``progress``: the weight
        loading bar (None: shown for large checkpoints)."""
        directory = resolve(name_or_path)
        data = _read_config(directory)
        if config:
            declared = architectures.get(data.get("model_type")).Config.model_fields
            unknown = sorted(set(config) - set(declared))
            if unknown:
                raise ConfigError(f"Model.load got {unknown}, which model_type {data['model_type']!r} does not read; "
                                  f"its config keys: {', '.join(sorted(k for k in declared if k != 'model_type'))}")
        arch = architecture_for({**data, **config})
        if task == "text-generation":
            if arch.generative_task is None:
                raise ConfigError(f"task 'text-generation' needs a causal or encoder-decoder LM; model_type "
                                  f"{arch.model_type!r} has no generative task (its tasks: {list(arch.tasks)})")
            task = arch.generative_task
        arch.check_task(task)
        dtype = check_float_dtype(dtype, auto=True) or "float32"
        be = backends.get(backend).on(device)  # an unknown or unavailable device fails here, before any weight
        with open_checkpoint(directory) as ckpt:
            if dtype == "auto":
                dtype = auto_dtype(data, ckpt)
            arch.resolve(set(ckpt.keys()))
            wmap = arch.weight_map(task)
            with checking_params(source_check(ckpt, wmap, arch.config.layer_counts())):
                graphs = arch.graphs(task, dtype)
            graph = graphs["forward"]
            expected = {p.name: (p.shape, p.dtype.numpy) for p in graph.params}
            dtypes = {p.name: p.dtype for p in graph.params}
            # streamed: each tensor goes from the mapped file into a native array, one at a time
            params = load_params(ckpt, wmap, expected, dtype=dtype, progress=progress,
                                 to_native=lambda name, array: be.to_native(array, dtypes[name]))
            program = be.compile(graph, params)  # shares natives of the declared dtype, no copy
        model = cls(arch, task, graphs, program)
        model.generation_config = GenerationConfig.load(directory, arch.config.to_dict())
        return model

    def to(self, backend: str | Backend, device: Any = None) -> Model:
        """The same model and weights on another backend (and ``device``, as in `load`; weights are
        copied, files not re-read)."""
        be = backends.get(backend).on(device)
        model = Model(self.arch, self.task, self.graphs, be.compile(self.graph, self.program.numpy_params()))
        model.generation_config = self.generation_config
        return model

    def save(self, directory: str | os.PathLike[str], max_shard_size: int | str = "5GB") -> list[Path]:
        """Write ``config.json`` and ``model.safetensors`` in the layout of the task's transformers
        class (and ``generation_config.json`` if the model has one), so ``transformers`` (and isoform)
        load it back; sharded above ``max_shard_size`` (``"5GB"``, ``"500MB"`` or bytes) as
        ``save_pretrained``; all or nothing (`isoform.staging`: a failed save leaves ``directory`` as
        it was). Returns the files written."""
        config = self.config.to_dict()
        config["architectures"] = [self.arch.tasks[self.task]]
        config["dtype"] = self.dtype
        wmap = self.arch.weight_map(self.task)
        with staged_directory(directory, stale=checkpoint_files) as stage:
            paths = save_params(stage, self.program.numpy_params(), wmap, config, max_shard_size=max_shard_size)
            if self.generation_config is not None:
                paths.append(self.generation_config.save(stage))
        return moved(paths, stage, directory)

    def export_onnx(self, path: str | os.PathLike[str], opset: int | None = None) -> Path:
        """Write the graph and weights as an ONNX model (dynamic batch/seq axes; needs the ``onnx``
        extra); see `isoform.backends.onnx.export_onnx`. Returns the path written."""
        from .backends.onnx import export_onnx

        return export_onnx(self.graph, self.program.numpy_params(), path, opset=opset,
                           metadata={"architecture": self.arch.model_type, "task": self.task or ""})

    def export_generation_onnx(self, directory: str | os.PathLike[str], opset: int | None = None) -> list[Path]:
        """Write the generation graphs of a ``causal-lm`` / ``seq2seq-lm`` model into ``directory``:
        ``decoder.onnx`` (the KV-cached graph, see `isoform.generation.Decoder`) and, for an
        encoder-decoder, ``encoder.onnx`` (its outputs feed the decoder's cross-attention caches).
        Returns the paths written."""
        from .backends.onnx import export_onnx

        self._require_generation("the generation ONNX graphs")
        params, paths = self.program.numpy_params(), []
        with staged_directory(directory) as stage:
            for part in ("encoder", "decoder"):
                if part not in self.graphs:
                    continue
                graph = self.graphs[part]
                meta = {"architecture": self.arch.model_type, "task": self.task or "", "part": part}
                if "encoder" in self.graphs:
                    meta["decoder_start_token_id"] = str(self.arch.decoder_start_token_id)
                paths.append(export_onnx(graph, {p.name: params[p.name] for p in graph.params}, stage / f"{part}.onnx",
                                         opset=opset, metadata=meta))
        return moved(paths, stage, directory)

    # -- running ----------------------------------------------------------------------------------
    def __call__(self, **inputs: Any) -> ModelOutput:
        """Run on the model's inputs (`Model.inputs`: for text ``input_ids``, ``attention_mask``, default
        all ones, and ``token_type_ids``, default zeros), NumPy or backend-native arrays. Inputs are
        checked from the architecture's input specs (names, shapes, dtypes, id ranges, lengths,
        finiteness) before any compute."""
        arrays, dims = self._prepare(inputs)
        seq = dims.get("seq")
        padded = self._pad(arrays, seq)
        out = self.program(**padded)
        if padded is not arrays:
            out = {k: _cut(v, self._seq_axes[k], seq) for k, v in out.items()}
        return ModelOutput({k: out[k] for k in self.graph.outputs}, self.backend)

    # -- generation -------------------------------------------------------------------------------
    def generate(self, input_ids: Any = None, attention_mask: Any = None, **kwargs: Any) -> Any:
        """Generate continuations of ``input_ids`` [batch, seq] (NumPy or backend-native; right-, left- or
        unpadded, with ``attention_mask``) with a ``causal-lm`` (or ``seq2seq-lm``) model (speech models:
        ``input_features`` [batch, frames, features], positionally or by name); returns int64
        NumPy [batch * num_return_sequences, length]: the prompt left-padded with ``pad_token_id`` followed by
        the new tokens (decoder-only models, as transformers), or the decoder tokens (seq2seq).

        Options (transformers' names and defaults, over the checkpoint's ``generation_config.json``; see
        `isoform.generation.GenerationConfig`): ``max_new_tokens``, ``min_new_tokens``, ``do_sample``,
        ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``typical_p``, ``epsilon_cutoff``, ``eta_cutoff``,
        ``num_beams``, ``length_penalty``, ``early_stopping``,
        ``num_return_sequences``, ``repetition_penalty``, ``no_repeat_ngram_size``, ``eos_token_id``,
        ``pad_token_id``, ``stop_strings`` (with ``tokenizer=``). ``seed``: sampling seed (NumPy RNG on the
        host; same seed, same tokens on a backend). ``stream=True`` returns a generator of the new token of
        every row per step ([rows] int64); ``streamer``: a callable given the same arrays (``.end()`` called
        at the end if it has one). Greedy and beam search match transformers' ``generate`` token for token.
        Special token ids outside the vocabulary (GPT-2's default eos 50256 in a small checkpoint, -1) work
        as in transformers. Threads may call one model's ``generate`` (and ``__call__``) at once: each call
        runs on a decoder (KV cache) of its own."""
        from .generation.generate import generate

        self._require_generation("generate")
        source = self.inputs.specs[0].name  # input_ids, or a speech encoder's input_features
        input_ids = kwargs.pop(source, input_ids) if source != "input_ids" else input_ids
        if input_ids is None:
            raise InputError(f"generate needs the prompt: {source}")
        ids = self._as_numpy(source, input_ids)
        mask = None if attention_mask is None else self._as_numpy("attention_mask", attention_mask)
        try:
            decoder = self._idle.pop()  # atomic: concurrent calls never share a decoder (its KV cache)
        except IndexError:
            decoder = self.decoder()
        base = self.generation_config or GenerationConfig.from_model_config(self.config.to_dict())
        return generate(decoder, base, ids, mask, release=lambda: self._idle.append(decoder), **kwargs)

    def decoder(self) -> Decoder:
        """A new incremental decoder of this ``causal-lm`` / ``seq2seq-lm`` model (prefill / step /
        reorder over a static KV cache, see `isoform.generation.Decoder`). The generation graphs are
        compiled once per model and share its weights; each decoder holds its own cache."""
        with self._compiling:
            if self._generation is None:
                self._generation = self._compile_generation()
        return Decoder(self._generation)

    def _compile_generation(self) -> DecodingGraphs:
        self._require_generation("incremental decoding", ConfigError)
        native = self.program.native_params()
        compiled = {part: self.backend.compile(self.graphs[part], {p.name: native[p.name] for p in self.graphs[part].params})
                    for part in ("encoder", "decoder") if part in self.graphs}
        encoder = compiled.get("encoder")
        return DecodingGraphs(
            decoder=compiled["decoder"], encoder=encoder, vocab_size=self.arch.vocab_size,
            context_length=self.arch.max_length, check=lambda prompt: self._check(prompt, partial=True),
            start_token=self.arch.decoder_start_token_id if encoder is not None else None, pad_id=self.arch.pad_id,
            source=self.inputs.specs[0].name)

    def _require_generation(self, what: str, error: type[Exception] = InputError) -> None:
        if "decoder" not in self.graphs:
            raise error(f"{what} needs a model loaded with task='causal-lm' (or 'seq2seq-lm'), this one has "
                             f"task={self.task!r}")

    def warmup(self, batch: int = 1, seq: int = 128, choices: int = 2) -> float:
        """Compile for inputs of this size ahead of the first real call (``seq``: tokens, or for audio
        models samples); returns seconds taken."""
        sizes = {"batch": batch, "seq": seq, "choices": choices, "target": seq, "samples": seq}
        dummy = {s.name: np.full([sizes.get(d, d) for d in s.shape], s.pad, np.float32 if s.dtype == FLOAT else np.int64)
                 for s in self.inputs.specs if s.required}
        start = time.perf_counter()
        self(**dummy)
        return time.perf_counter() - start

    def _prepare(self, inputs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Checked arrays of every graph input (defaults filled, graph dtypes), and the dim sizes."""
        arrays = {k: self._as_numpy(k, v) for k, v in inputs.items() if v is not None}
        dims = self._check(arrays)
        arrays = self.inputs.complete(arrays)
        return {k: a.astype(self._input_dtypes[k], copy=False) for k, a in arrays.items()}, dims

    def _check(self, arrays: Mapping[str, np.ndarray], partial: bool = False) -> dict[str, int]:
        dims = self.inputs.check(arrays, partial=partial)
        self.arch.check_inputs(arrays, self.task)
        return dims

    def _as_numpy(self, name: str, x: Any) -> np.ndarray:
        try:
            a = x if isinstance(x, np.ndarray) else np.asarray(x if isinstance(x, list | tuple) else self.backend.to_numpy(x))
        except Exception as e:
            raise InputError(f"{name} cannot be read as an array: {type(x).__name__} ({e})") from None
        if a.dtype == object:
            raise InputError(f"{name} must be a rectangular array of numbers")
        return a

    def _pad(self, arrays: dict[str, np.ndarray], seq: int | None) -> dict[str, np.ndarray]:
        """``arrays`` padded along ``seq`` up to the next bucket (jitted backends compile once per
        bucket), or ``arrays`` itself when the model is not padding-safe or no padding is needed."""
        if not self.bucket or seq is None or not self.arch.is_padding_safe(self.task):
            return arrays
        target = min(-(-seq // self.bucket) * self.bucket, self.arch.max_length or seq)
        if target <= seq:
            return arrays
        padded = {}
        for spec in self.inputs.specs:
            x = arrays[spec.name]
            if "seq" in spec.shape:
                widths = [(0, target - seq if d == "seq" else 0) for d in spec.shape]
                x = np.pad(x, widths, constant_values=spec.pad)
            padded[spec.name] = x
        return padded


def architecture_for(config: Mapping[str, Any]) -> Architecture:
    """The architecture instance for a ``config.json`` mapping (ConfigError if unknown or invalid)."""
    return architectures.get(config.get("model_type")).from_config(config)


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{directory} has no config.json") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def _seq_axis(graph: Graph, value: str) -> int | None:
    shape = graph.values[value].shape
    return shape.index("seq") if "seq" in shape else None


def _cut(x: Any, axis: int | None, n: int) -> Any:
    return x if axis is None else x[(slice(None),) * axis + (slice(0, n),)]


__all__ = ["Model", "ModelOutput", "architecture_for"]
