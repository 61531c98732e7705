"""Hugging Face Optimum's ONNX layout: export a generative model as the files
``optimum.onnxruntime.ORTModelForCausalLM`` / ``ORTModelForSeq2SeqLM`` load with ``use_cache=True``,
and generate from such a directory with isoform's own search over ONNX Runtime sessions.

    m.export_onnx("out/", use_cache=True, tokenizer="./ckpt")   # = export_optimum(m, "out/", ...)
    gen = OptimumGenerator.load("out/")                         # ONNX Runtime sessions on the files
    gen.generate(ids, attention_mask=mask, max_new_tokens=20)   # isoform.generation, as Model.generate

Files (names, inputs and outputs as Optimum's exporter writes them; caches grow by concatenation,
see `isoform.layers.causal`):

* causal LMs: ``model.onnx``: ``input_ids``, ``position_ids`` [batch, seq], ``attention_mask``
  [batch, past+seq], ``past_key_values.{i}.key``/``.value`` [batch, kv_heads, past, head_dim] (past 0
  at the prefill) -> ``logits`` [batch, seq, vocab], ``present.{i}.key``/``.value`` (past + this call's);
* encoder-decoders: ``encoder_model.onnx``, ``decoder_model.onnx`` (first step) and
  ``decoder_with_past_model.onnx`` (the two-file decoder layout, not the merged one); see
  `isoform.architectures.seq2seq`;
* ``config.json``, ``generation_config.json`` and, given a ``tokenizer``, its files.

Every causal family gets ``position_ids`` (Optimum's exports of GPT-2, GPT-Neo, Llama, Mistral and
Qwen2 have it; Optimum exports no OpenAI GPT). Speech encoder-decoders (float encoder inputs) are not
exported in this layout.

`OptimumDecoder` is the incremental-decoder protocol of `isoform.generation` over the sessions: the
caches are NumPy arrays that grow by one slot per step; search (greedy, sampling, beams) is
`isoform.generation.generate`'s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .architectures import architecture_for, read_config
from .errors import ConfigError, InputError
from .generation.config import GenerationConfig
from .generation.decoder import check_reorder, check_step
from .layers.causal import PAST, PRESENT
from .staging import moved, staged_directory

if TYPE_CHECKING:
    from .architectures import Architecture
    from .tokenization import Tokenizer

CAUSAL_FILE = "model.onnx"
SEQ2SEQ_PARTS = ("encoder_model", "decoder_model", "decoder_with_past_model")
_ORT_FLOAT = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
_ORT_TYPES = {**_ORT_FLOAT, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


# -- export ---------------------------------------------------------------------------------------
def export_optimum(arch: Architecture, task: str | None, params: Mapping[str, np.ndarray],
                   directory: str | os.PathLike[str], *, dtype: str, generation_config: GenerationConfig | None = None,
                   opset: int | None = None, tokenizer: Tokenizer | str | os.PathLike[str] | None = None) -> Path:
    """Write a model of ``arch`` (``task`` ``causal-lm`` or ``seq2seq-lm``; weights ``params`` by graph
    name, in ``dtype``) into ``directory`` in Optimum's layout (see the module docstring), all files or
    none, with ``generation_config`` (default: the model config's); ``tokenizer``: an isoform `Tokenizer`
    or a directory to load one from, saved beside the model. Returns ``directory``."""
    from .backends.onnx import export_onnx
    from .tokenization import Tokenizer

    if task not in ("causal-lm", "seq2seq-lm"):
        raise InputError(f"the ONNX layout with a KV cache (use_cache=True) needs a model loaded with task='causal-lm' "
                         f"or 'seq2seq-lm', this one has task={task!r}")
    source = arch.input_specs(task).specs[0].name
    if task == "seq2seq-lm" and source != "input_ids":
        raise InputError(f"the Optimum ONNX layout is exported for text encoder-decoders; {arch.model_type!r} reads "
                         f"{source}")
    if task == "causal-lm":
        graphs = {CAUSAL_FILE: arch.build(task, dtype, cached="growing")}
    else:
        graphs = {f"{part}.onnx": arch.build(task, dtype, part=part) for part in SEQ2SEQ_PARTS}
    tok = Tokenizer.load(tokenizer) if isinstance(tokenizer, str | os.PathLike) else tokenizer
    config = {**arch.config.to_dict(), "model_type": arch.model_type, "architectures": [arch.tasks[task]],
              "use_cache": True}
    with staged_directory(directory) as stage:
        paths = []
        for name, graph in graphs.items():
            meta = {"architecture": arch.model_type, "task": task, "layout": "optimum"}
            paths.append(export_onnx(graph, {p.name: params[p.name] for p in graph.params}, stage / name,
                                     opset=opset, metadata=meta))
        (stage / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        base = generation_config or GenerationConfig.from_model_config(arch.config.to_dict())
        base.save(stage)
        if tok is not None:
            tok.save(stage)
    moved(paths, stage, directory)
    return Path(directory)


# -- generation from the files ----------------------------------------------------------------------
class OptimumDecoder:
    """Prefill / step / reorder (`isoform.generation.search.IncrementalDecoder`) over the ONNX Runtime
    sessions of an Optimum directory, with growing NumPy caches. Works on what isoform exports and on
    Optimum's own two-file exports (it feeds ``position_ids`` and ``encoder_hidden_states`` only where
    a file takes them)."""

    def __init__(self, sessions: Mapping[str, Any], vocab_size: int, context_length: int | None,
                 start_token: int | None, check: Any):
        self.sessions = dict(sessions)
        self.encoder_decoder = "encoder_model" in self.sessions
        self.vocab_size, self.context_length, self.start_token = vocab_size, context_length, start_token
        self.source = "input_ids"
        self._check = check
        step = self.sessions["decoder_with_past_model" if self.encoder_decoder else "model"]
        self._inputs = {i.name: i for i in step.get_inputs()}
        self._self_past = [n for n in self._inputs if n.startswith(PAST + ".") and ".encoder." not in n]
        odd = sorted({self._inputs[n].type for n in self._self_past} - set(_ORT_FLOAT))
        if odd:
            raise ConfigError(f"the caches of these files are {odd}: ONNX Runtime's Python API passes float16, float32 "
                              "and float64 arrays only (export in one of those dtypes)")
        #: bytes of KV cache per row and position (generate checks a request's size against it)
        self.cache_bytes_per_position = sum(int(self._inputs[n].shape[1]) * int(self._inputs[n].shape[3])
                                            * np.dtype(_ORT_FLOAT[self._inputs[n].type]).itemsize
                                            for n in self._self_past)
        self._past: dict[str, np.ndarray] = {}
        self._fixed: dict[str, np.ndarray] = {}  # encoder-decoders: cross keys/values and the encoder mask
        self._mask = np.zeros((0, 0), np.int64)
        self._next = np.zeros(0, np.int64)
        self._slot = self._end = 0

    @property
    def batch_size(self) -> int:
        return self._mask.shape[0]

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int) -> np.ndarray:
        """As `isoform.generation.Decoder.prefill`: decoder-only prompts LEFT-padded; float32 logits [batch, vocab]."""
        ids, mask = np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)
        if ids.ndim != 2 or not ids.size or mask.shape != ids.shape:
            raise InputError(f"input_ids [batch, seq] (seq >= 1) and an attention_mask of its shape are needed, got "
                             f"{ids.shape} and {mask.shape}")
        self._check({"input_ids": ids, "attention_mask": mask})
        positions = 1 if self.encoder_decoder else ids.shape[1]
        if self.context_length is not None and positions + max_new_tokens > self.context_length:
            raise InputError(f"{positions} + {max_new_tokens} (max_new_tokens) decoder positions exceed the model's "
                             f"context window of {self.context_length} tokens (max_position_embeddings)")
        batch = ids.shape[0]
        self._end = positions + max_new_tokens
        if self.encoder_decoder:
            return self._prefill_seq2seq(ids, mask)
        self._mask = mask
        self._next = mask.sum(1)
        empty = {n: np.zeros((batch, self._inputs[n].shape[1], 0, self._inputs[n].shape[3]), _ORT_FLOAT[self._inputs[n].type])
                 for n in self._self_past}
        return self._run("model", ids, np.where(mask == 0, 1, np.cumsum(mask, axis=1) - 1), empty)

    def _prefill_seq2seq(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        encoder, first = self.sessions["encoder_model"], self.sessions["decoder_model"]
        states = encoder.run(["last_hidden_state"], _feeds(encoder, {"input_ids": ids, "attention_mask": mask}))[0]
        start = np.full((len(ids), 1), self.start_token, np.int64)
        names = [o.name for o in first.get_outputs()]
        out = dict(zip(names, first.run(names, _feeds(first, {"input_ids": start, "encoder_attention_mask": mask,
                                                              "encoder_hidden_states": states}))))
        self._fixed = {"encoder_attention_mask": mask, **{_past(n): v for n, v in out.items() if ".encoder." in n}}
        self._past = {_past(n): v for n, v in out.items() if n.startswith(PRESENT + ".") and ".encoder." not in n}
        self._mask, self._next, self._slot = np.ones((len(ids), 1), np.int64), np.ones(len(ids), np.int64), 1
        return np.asarray(out["logits"][:, -1], np.float32)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token per row ([batch] int64); float32 logits [batch, vocab]."""
        tokens = check_step(tokens, self.batch_size, self.vocab_size, self._slot, self._end)
        self._mask = np.pad(self._mask, ((0, 0), (0, 1)), constant_values=1)
        part = "decoder_with_past_model" if self.encoder_decoder else "model"
        logits = self._run(part, tokens.reshape(-1, 1), self._next.reshape(-1, 1), self._past)
        self._next = self._next + 1
        return logits

    def reorder(self, index: np.ndarray) -> None:
        """Row i of the new state is row index[i] of the old (beams, returned sequences)."""
        index = check_reorder(index, self.batch_size)
        self._past = {n: v[index] for n, v in self._past.items()}
        self._fixed = {n: v[index] for n, v in self._fixed.items()}
        self._mask, self._next = self._mask[index], self._next[index]

    def _run(self, part: str, ids: np.ndarray, positions: np.ndarray, past: Mapping[str, np.ndarray]) -> np.ndarray:
        session = self.sessions[part]
        names = [o.name for o in session.get_outputs()]
        feeds = {"input_ids": ids, "attention_mask": self._mask, "position_ids": positions, **self._fixed, **past}
        out = dict(zip(names, session.run(names, _feeds(session, feeds))))
        self._past = {_past(n): v for n, v in out.items() if n.startswith(PRESENT + ".") and ".encoder." not in n}
        self._slot += ids.shape[1]
        return np.asarray(out["logits"][:, -1], np.float32)


class OptimumGenerator:
    """An Optimum-layout directory loaded into ONNX Runtime sessions, generating with isoform's search."""

    def __init__(self, directory: Path, sessions: Mapping[str, Any], config: Mapping[str, Any]):
        self.directory = directory
        self.sessions = dict(sessions)
        self.arch = architecture_for(config)
        self.task = self.arch.generative_task
        self.inputs = self.arch.input_specs(self.task)
        self.generation_config = GenerationConfig.load(directory, self.arch.config.to_dict())

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> OptimumGenerator:
        """Open ``directory`` (``config.json`` and ``model.onnx``, or the three seq2seq files) on the CPU
        execution provider."""
        import onnxruntime as ort

        from .backends.onnxruntime import session_options

        directory = Path(directory)
        config = read_config(directory)
        names = [CAUSAL_FILE] if (directory / CAUSAL_FILE).exists() else [f"{p}.onnx" for p in SEQ2SEQ_PARTS]
        missing = [n for n in names if not (directory / n).exists()]
        if missing:
            raise ConfigError(f"{directory} is not an Optimum ONNX directory with a KV cache: it lacks {missing} "
                              f"(want {CAUSAL_FILE}, or {', '.join(f'{p}.onnx' for p in SEQ2SEQ_PARTS)})")
        sessions = {n.removesuffix(".onnx"): ort.InferenceSession(str(directory / n), session_options(),
                                                                 providers=["CPUExecutionProvider"]) for n in names}
        return cls(directory, sessions, config)

    def decoder(self) -> OptimumDecoder:
        """A new incremental decoder (its own caches) over the sessions."""
        arch = self.arch
        start = arch.decoder_start_token_id if "encoder_model" in self.sessions else None
        return OptimumDecoder(self.sessions, arch.vocab_size, arch.max_length, start,
                              lambda arrays: self.inputs.check(arrays, partial=True))

    def generate(self, input_ids: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
        """As `isoform.Model.generate` (same options, same output layout)."""
        from .generation.generate import generate

        ids = np.asarray(input_ids)
        mask = None if attention_mask is None else np.asarray(attention_mask)
        return generate(self.decoder(), self.generation_config, ids, mask, **kwargs)


def _feeds(session: Any, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``values`` a session takes (files differ in which optional inputs they have), in its dtypes."""
    out = {}
    for i in session.get_inputs():
        if i.name not in values:
            raise InputError(f"ONNX input {i.name!r} of this file is not one isoform feeds (inputs: {sorted(values)})")
        if i.type not in _ORT_TYPES:
            raise ConfigError(f"ONNX input {i.name!r} is {i.type}: isoform feeds {sorted(_ORT_TYPES)}")
        out[i.name] = np.asarray(values[i.name]).astype(_ORT_TYPES[i.type], copy=False)
    return out


def _past(name: str) -> str:
    return PAST + name.removeprefix(PRESENT)
