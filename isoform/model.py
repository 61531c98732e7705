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

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import architectures, backends
from .architectures import FLOAT, ArchConfig, Architecture, Inputs, InputSpec, architecture_for, read_config
from .backends import Backend, Program
from .errors import BackendError, ConfigError, GraphError, InputError
from .generation.config import GenerationConfig
from .generation.decoder import Decoder, DecodingGraphs
from .hub import resolve
from .ir import Graph
from .ir.builder import checking_params
from .ir.rewrite import as_input, expose, taps
from .layers.losses import label_names, loss_graph, problem_type, shift_graph
from .staging import moved, staged_directory
from .weights import NewParams, auto_dtype, load_params, open_checkpoint, save_params, source_check
from .weights.dtypes import check_float_dtype
from .weights.saving import checkpoint_files

#: `Model.__call__` flags -> the tap kinds (`isoform.ir.rewrite`) whose names end so, exposed as outputs.
OUTPUT_FLAGS = {"output_hidden_states": "hidden_states", "output_attentions": "attentions"}
#: Tap kinds (by name ending: ``decoder_inputs_embeds`` too) that a call may pass as inputs instead.
INPUT_TAPS = ("inputs_embeds", "position_ids")


class ModelOutput(dict):
    """Outputs by their transformers names (``last_hidden_state``, ``logits``, ...) as the backend's
    native arrays; ``.numpy()`` converts them all; attribute access works too (``out.logits``)."""

    def __init__(self, values: Mapping[str, Any], backend: Backend):
        super().__init__(values)
        self._backend = backend

    def numpy(self) -> dict[str, Any]:
        """Every output as a NumPy array (tuples such as ``hidden_states`` as tuples of arrays)."""
        def convert(v: Any) -> Any:
            return tuple(map(convert, v)) if isinstance(v, tuple) else np.asarray(self._backend.to_numpy(v))

        return {k: convert(v) for k, v in self.items()}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"output {name!r} does not exist; outputs are {sorted(self)}") from None

    def __getitem__(self, key: Any) -> Any:
        """``out["logits"]``; ``out[0]`` / ``out[:2]`` index `to_tuple`, as transformers' ``ModelOutput``."""
        return super().__getitem__(key) if isinstance(key, str) else self.to_tuple()[key]

    def to_tuple(self) -> tuple[Any, ...]:
        """The outputs in transformers' order (its output class's field order, ``loss`` first)."""
        return tuple(self.values())


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
        self._taps = taps(self.graph)  # tapped values: what output_hidden_states=... and inputs_embeds= need
        self._variant_keys = {*OUTPUT_FLAGS, *(k for k in self._taps if k.endswith(INPUT_TAPS))}
        self._variants: dict[tuple[tuple[str, ...], tuple[str, ...]], Model] = {}  # rewritten forward graphs, compiled
        self._variants_lock = threading.Lock()
        self._losses: dict[tuple, Program] = {}  # loss graphs by (problem type, label rank), compiled on first use
        self._shift: Program | None = None  # seq2seq: labels -> decoder_input_ids
        if hasattr(program, "train"):
            program.train(False)  # eval mode, as from_pretrained returns models

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
             dtype: Any = "float32", *, device: Any = None, mesh: Any = None, progress: bool | None = None,
             seed: int = 0, **config: Any) -> Model:
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
        `jax.Device` or ``"gpu:0"``); the others take None or ``"cpu"``. ``mesh``: jax only, a
        `jax.sharding.Mesh` with axes ``("data", "model")`` to shard the model over (tensor parallel on
        "model", batches on "data"; weights are placed sharded as they stream; other axis names: pass
        ``backend=backends.get("jax").sharded(mesh, axis_names=...)``; see `isoform.backends.jax_mesh`).
        ``progress``: the weight loading bar (None: shown for large checkpoints).

        A task head the checkpoint lacks (``Model.load(bare_dir, task="sequence-classification",
        num_labels=3)``; also ``id2label``/``label2id``/``problem_type``) is created as transformers
        initialises it, from ``numpy.random.default_rng(seed)`` (`isoform.weights.NewParams`), and listed in
        one warning; any other missing tensor is still an error."""
        directory = resolve(name_or_path)
        data = read_config(directory)
        if config:
            declared = architectures.get(data.get("model_type")).Config.model_fields
            unknown = sorted(set(config) - set(declared) - set(LABEL_KEYS))
            if unknown:
                raise ConfigError(f"Model.load got {unknown}, which model_type {data['model_type']!r} does not read; "
                                  f"its config keys: {', '.join(sorted(k for k in declared if k != 'model_type'))}")
        arch = architecture_for({**data, **_label_config(config)})
        if task == "text-generation":
            if arch.generative_task is None:
                raise ConfigError(f"task 'text-generation' needs a causal or encoder-decoder LM; model_type "
                                  f"{arch.model_type!r} has no generative task (its tasks: {list(arch.tasks)})")
            task = arch.generative_task
        arch.check_task(task)
        dtype = check_float_dtype(dtype, auto=True) or "float32"
        be = backends.get(backend).on(device)  # an unknown or unavailable device fails here, before any weight
        if mesh is not None:
            be = _on_mesh(be, mesh, device)
        with open_checkpoint(directory) as ckpt:
            if dtype == "auto":
                dtype = auto_dtype(data, ckpt)
            arch.resolve(set(ckpt.keys()))
            wmap = arch.weight_map(task)
            with checking_params(source_check(ckpt, wmap, arch.config.layer_counts())):
                graphs = arch.graphs(task, dtype)
            graph = graphs["forward"]
            expected = {p.name: (p.shape, p.dtype.numpy) for p in graph.params}
            values = {p.name: p for p in graph.params}
            # streamed: each tensor goes from the mapped file into a native array, one at a time
            params = load_params(ckpt, wmap, expected, dtype=dtype, progress=progress, new=_new_head(arch, task, seed),
                                 to_native=lambda name, array: be.param_to_native(values[name], array))
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

    def export_onnx(self, path: str | os.PathLike[str], opset: int | None = None, *, use_cache: bool = False,
                    tokenizer: Any = None) -> Path:
        """Write the graph and weights as an ONNX model (dynamic batch/seq axes; needs the ``onnx``
        extra); see `isoform.backends.onnx.export_onnx`. Returns the path written. ``use_cache=True``
        (``causal-lm`` / ``seq2seq-lm``): ``path`` is a directory, written in Hugging Face Optimum's layout
        with KV caches, with the tokenizer's files if ``tokenizer`` (a `Tokenizer` or its directory) is
        given; see `isoform.optimum`."""
        from .backends.onnx import export_onnx

        if use_cache:
            from .optimum import export_optimum

            return export_optimum(self.arch, self.task, self.program.numpy_params(), path, dtype=self.dtype,
                                  generation_config=self.generation_config, opset=opset, tokenizer=tokenizer)
        if tokenizer is not None:
            raise InputError("export_onnx writes tokenizer files only with use_cache=True (a directory)")
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
        finiteness) before any compute. With labels (``labels``; question answering: ``start_positions``
        and ``end_positions``) the outputs start with transformers' ``loss`` (see `isoform.layers.losses`).
        As in transformers, ``output_hidden_states=True`` / ``output_attentions=True`` add the tuples
        ``hidden_states`` / ``attentions`` (encoder-decoders: ``encoder_hidden_states``, ``decoder_attentions``,
        ``cross_attentions``, ...), and ``inputs_embeds`` may replace ``input_ids``, ``position_ids`` the default
        positions, where the architecture taps them (each combination compiles once, on first use)."""
        if self._variant_keys & inputs.keys():  # output_hidden_states / output_attentions, inputs_embeds, position_ids
            return self._call_variant(inputs)
        labels = self._take_labels(inputs)
        arrays, dims = self._prepare(inputs)
        seq = dims.get("seq")
        padded = self._pad(arrays, seq)
        out = self.program(**padded)
        if padded is not arrays:
            out = {k: _cut(v, self._seq_axes[k], seq) for k, v in out.items()}
        out = ModelOutput({k: out[k] for k in self.graph.outputs}, self.backend)
        return self._with_loss(out, labels) if labels else out

    def _call_variant(self, inputs: Mapping[str, Any]) -> ModelOutput:
        """`__call__` with transformers' ``output_hidden_states`` / ``output_attentions`` flags (outputs
        ``hidden_states``, ``attentions``, or for encoder-decoders ``encoder_hidden_states``, ``decoder_attentions``,
        ``cross_attentions``, ...: tuples of arrays, as transformers), or with an input that replaces a value
        the graph computes (``inputs_embeds`` instead of ``input_ids``, ``position_ids``): runs a variant
        of the forward graph (`isoform.ir.rewrite`), built and compiled once per combination."""
        inputs, exposed = dict(inputs), []
        for flag, kind in OUTPUT_FLAGS.items():
            on = inputs.pop(flag, None)
            if on is not None and not isinstance(on, bool | np.bool_):
                raise InputError(f"{flag} must be True or False, got {on!r}")
            kinds = [k for k in self._taps if k.endswith(kind) and not k.endswith(INPUT_TAPS)]
            if on and not kinds:
                raise InputError(f"{flag}=True is not supported by model_type {self.arch.model_type!r} yet "
                                 f"(its graph has no {kind} taps)")
            exposed += kinds if on else []
        replaced = tuple(k for k in self._taps if k.endswith(INPUT_TAPS) and inputs.get(k) is not None)
        inputs = {k: v for k, v in inputs.items() if v is not None or k not in self._variant_keys}
        key = (tuple(exposed), replaced)
        model = self if key == ((), ()) else self._variant(key)
        return ModelOutput(_grouped(model(**inputs), exposed), self.backend)

    def _variant(self, key: tuple[tuple[str, ...], tuple[str, ...]]) -> Model:
        with self._variants_lock:
            if key not in self._variants:
                self._variants[key] = self._build_variant(*key)
        variant = self._variants[key]
        variant.bucket = self.bucket
        return variant

    def _build_variant(self, exposed: tuple[str, ...], replaced: tuple[str, ...]) -> Model:
        """A model of the forward graph with ``replaced`` taps made inputs and ``exposed`` taps outputs,
        sharing this model's weights."""
        graph, specs = self.graph, self.inputs
        for kind in replaced:
            source = kind.replace("inputs_embeds", "input_ids").replace("position_ids", "input_ids")
            embeds = kind.endswith("inputs_embeds")
            try:
                graph = as_input(graph, kind, None if embeds else specs[source].shape)
            except GraphError as e:
                raise InputError(f"{kind} is not supported by this {self.arch.model_type} model: {e}") from None
            if not embeds:
                specs = specs.adding(InputSpec(kind, specs[source].shape, high=self.arch.max_length,
                                               bound="the number of positions (max_position_embeddings)"))
            elif source in graph.values:
                raise InputError(f"{kind} cannot replace {source} for task {self.task!r} of model_type "
                                 f"{self.arch.model_type!r}: its graph reads {source} beyond the embedding lookup")
            else:
                specs = specs.replacing(source, InputSpec(kind, graph.values[kind].shape, FLOAT))
        if exposed:
            graph = expose(graph, exposed)
        native = self.program.native_params()
        model = Model(self.arch, self.task, {"forward": graph},
                      self.backend.compile(graph, {p.name: native[p.name] for p in graph.params}))
        model.inputs = specs
        if self.training:
            model.train()
        return model

    # -- training ---------------------------------------------------------------------------------
    # The loss of a task is a small graph of its own (`isoform.layers.losses`) compiled on the model's
    # backend and chained after the forward program, so on torch, JAX and TensorFlow gradients flow from
    # the loss to the parameters through both.

    def train(self, mode: bool = True) -> Model:
        """Training mode (``mode=False``: `eval`), returns the model. torch: outputs record autograd in
        training mode (under grad mode); in eval mode, the default, they are ordinary tensors computed
        under ``torch.no_grad()`` (fast, and usable as inputs of your own autograd code). jax and
        tensorflow differentiate any call (`apply`, ``tf.GradientTape``). Dropout (the graph's ``dropout``
        nodes: BERT-family embeddings, sublayer outputs and classifiers) applies in training mode on torch and
        tensorflow calls, and on jax in ``apply(params, rng=key, ...)``. BackendError on backends that run
        inference only."""
        programs = [self.program, *self._losses.values(), *([self._shift] if self._shift is not None else [])]
        if not hasattr(self.program, "train"):
            if not mode:
                return self
            raise BackendError(f"backend {self.backend.name!r} runs inference only: train() needs torch, jax or "
                               "tensorflow (m.to('torch'), ...)")
        for program in programs:
            program.train(mode)
        for variant in self._variants.values():  # output_hidden_states=... / inputs_embeds= variants built so far
            variant.train(mode)
        return self

    def eval(self) -> Model:
        """Evaluation mode (the default after `load`); returns the model."""
        return self.train(False)

    @property
    def training(self) -> bool:
        return bool(getattr(self.program, "training", False))

    def parameters(self) -> Any:
        """torch: the parameters (``nn.Parameter``s, for ``torch.optim``), as ``nn.Module.parameters()``."""
        return self._native_view("parameters", "torch")()

    def named_parameters(self) -> Any:
        """torch: ``(name, parameter)`` pairs named by the graph: Hugging Face names without the model
        prefix (``encoder.layer.0.attention.self.query.weight``), linear weights stored [in, out]."""
        return self._native_view("named_parameters", "torch")()

    @property
    def trainable_variables(self) -> Any:
        """tensorflow: the float parameters as ``tf.Variable``s, for ``tf.GradientTape`` and Keras optimizers."""
        return self._native_view("trainable_variables", "tensorflow")

    def _native_view(self, attr: str, backend: str) -> Any:
        owner = getattr(self.program, "module", None)
        if not hasattr(owner, attr):
            raise BackendError(f"m.{attr} is the {backend} backend's view; this model runs on {self.backend.name!r} "
                               "(torch: m.parameters(), jax: m.params and m.apply, tensorflow: m.trainable_variables)")
        return getattr(owner, attr)

    @property
    def params(self) -> Any:
        """The backend's native parameter container: jax, the pytree ``{graph name: jax.Array}`` that
        `apply` takes (torch: the ``nn.Module``; tensorflow: the ``tf.Module``). On jax, assign trained
        values back (``m.params = new``, same names and shapes) for ``m(...)``, `save` and `generate` to
        use them."""
        return self.program.params

    @params.setter
    def params(self, new: Mapping[str, Any]) -> None:
        if not hasattr(self.program, "fn"):
            raise BackendError(f"assigning m.params is for the jax backend; on {self.backend.name!r} update the "
                               "parameters in place (torch: an optimizer, tensorflow: variables)")
        old = self.program.params
        wrong = sorted(set(old) ^ set(new)) + sorted(k for k in old if k in new and tuple(new[k].shape) != old[k].shape)
        if wrong:
            raise InputError(f"m.params must have the names and shapes of the current ones; differing: {wrong[:5]}")
        self.program.params = dict(new)
        with self._compiling:
            self._generation, self._idle = None, []  # recompiled over the new values when next needed

    def apply(self, params: Mapping[str, Any], *, rng: Any = None, **inputs: Any) -> dict[str, Any]:
        """jax: the pure function of the model, ``apply(params, **inputs) -> {name: jax.Array}`` (with
        labels, ``loss`` first), usable under ``jax.jit``, ``jax.grad`` and optax (``params``: a pytree like
        `params`). ``rng``: a ``jax.random`` key: dropout applied, as in training (None: none, as
        `eval`; flax's ``dropout_rng``). Inputs are checked when jax traces them (labels are not
        range-checked: they may be traced); defaults are filled as in `__call__`; no sequence bucketing."""
        if not hasattr(self.program, "fn"):
            raise BackendError(f"apply(params, **inputs) is the jax backend's functional form; this model runs on "
                               f"{self.backend.name!r}: call it, m(**inputs)")
        labels = self._take_labels(inputs, check=False)
        unknown = sorted(set(inputs) - set(self.inputs.names))
        missing = [s.name for s in self.inputs.specs if s.required and s.name not in inputs]
        if unknown or missing:
            raise InputError(f"apply takes inputs {list(self.inputs.names)}; unknown {unknown}, missing {missing}")
        feeds = self.inputs.complete(dict(inputs))
        out = self.program.fn(params, feeds) if rng is None else self.program.training_fn(params, feeds, rng)
        out = {k: out[k] for k in self.graph.outputs}
        if not labels:
            return out
        program = self._loss_program(labels)
        feeds = {v.name: out[v.name] if v.name in out else labels[v.name] for v in program.graph.inputs}
        return {"loss": program.fn({}, feeds)["loss"], **out}

    def _take_labels(self, inputs: dict[str, Any], check: bool = True) -> dict[str, Any]:
        """Pop the label inputs off ``inputs`` (NumPy when ``check``; seq2seq: ``decoder_input_ids``
        derived from ``labels`` unless given, as transformers' ``shift_tokens_right``)."""
        names = label_names(self.task)
        given = {n: inputs.pop(n) for n in ("labels", "start_positions", "end_positions") if n in inputs}
        given = {n: v for n, v in given.items() if v is not None}
        if not given:
            return {}
        if set(given) != set(names):
            if not names:
                raise InputError(f"task {self.task!r} has no loss: labels= needs a task head such as "
                                 "'sequence-classification' or 'masked-lm'")
            raise InputError(f"task {self.task!r} takes labels {list(names)} (all of them), got {sorted(given)}")
        if check:
            given = {n: self._as_numpy(n, v) for n, v in given.items()}
        if self.task == "seq2seq-lm" and inputs.get("decoder_input_ids") is None:
            if check:
                _check_classes("labels", given["labels"], self.arch.vocab_size)
            if self._shift is None:
                self._shift = self.backend.compile(shift_graph(self.arch.decoder_start_token_id, self.arch.pad_id), {})
            shifted = self._shift.fn({}, given) if not check else self._shift(**given)
            shifted = shifted["decoder_input_ids"]
            inputs["decoder_input_ids"] = self.backend.to_numpy(shifted) if check else shifted
        return given

    def _loss_program(self, labels: Mapping[str, Any]) -> Program:
        problem = rank = None
        if self.task == "sequence-classification":
            y = labels["labels"]
            problem = problem_type(getattr(self.config, "problem_type", None), self.config.num_labels,
                                   np.issubdtype(np.dtype(y.dtype), np.integer))
            rank = np.ndim(y)
        program = self._losses.get((problem, rank))
        if program is None:
            types = {name: self.graph.values[v].type for name, v in self.graph.outputs.items()}
            program = self.backend.compile(loss_graph(self.task, types, problem, rank), {})
            if hasattr(program, "train"):
                program.train(self.training)
            self._losses[(problem, rank)] = program
        return program

    def _with_loss(self, out: ModelOutput, labels: dict[str, np.ndarray]) -> ModelOutput:
        program = self._loss_program(labels)
        integer = {v.name for v in program.graph.inputs if v.dtype.is_int}
        for name, y in labels.items():
            if name not in integer:
                if not np.isfinite(y).all():
                    raise InputError(f"{name} holds non-finite values")
            elif self.task != "question-answering":  # positions are clamped, as transformers does
                _check_classes(name, y, int(np.shape(out[program.graph.inputs[0].name])[-1]))
        feeds = {v.name: out[v.name] if v.name in out else labels[v.name] for v in program.graph.inputs}
        return ModelOutput({"loss": program(**feeds)["loss"], **out}, self.backend)

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
        at the end if it has one), or a transformers streamer (an object with ``put``: ``TextStreamer``,
        ``TextIteratorStreamer``; given the prompt first, as transformers). ``generation_config``: an isoform or
        ``transformers.GenerationConfig`` or a dict, whose set options go over the checkpoint's (keyword
        arguments win). ``return_dict_in_generate=True`` returns a `isoform.generation.GenerateOutput`
        (``sequences``, ``scores`` / ``logits`` with ``output_scores`` / ``output_logits``, beam search's
        ``sequences_scores`` and ``beam_indices``). Greedy and beam search match transformers' ``generate`` token for token.
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


def _on_mesh(backend: Backend, mesh: Any, device: Any) -> Backend:
    if device is not None:
        raise BackendError(f"pass device= or mesh=, not both (got device={device!r})")
    if not hasattr(backend, "sharded"):
        raise BackendError(f"mesh= shards a model with JAX's sharding engine: it needs backend='jax', not {backend.name!r}")
    return backend.sharded(mesh)


#: Config keys every `Model.load` takes, as ``from_pretrained`` does (for a new task head).
LABEL_KEYS = ("num_labels", "id2label", "label2id", "problem_type")


def _label_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``num_labels`` turned into ``id2label``/``label2id`` as transformers does."""
    n = config.get("num_labels")
    if n is None or "id2label" in config:
        return config
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"num_labels must be a positive integer, got {n!r}")
    return {**config, "id2label": {str(i): f"LABEL_{i}" for i in range(n)},
            "label2id": config.get("label2id") or {f"LABEL_{i}": i for i in range(n)}}


def _new_head(arch: Architecture, task: str | None, seed: int) -> NewParams | None:
    """The head tensors a checkpoint may lack for ``task`` (none for the bare model)."""
    if task is None:
        return None
    return NewParams(arch.head_patterns, arch.config.number("initializer_range", 0.02, 0.0), seed, arch.tasks[task])


def _check_classes(name: str, y: np.ndarray, classes: int) -> None:
    """InputError unless ``y`` holds integer class indices in ``[0, classes)`` or -100 (ignored)."""
    if y.dtype.kind not in "iu":
        raise InputError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    bad = (y != -100) & ((y < 0) | (y >= classes))
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{name} holds {y[at]} at index {at}: labels must be in [0, {classes}) or -100 (ignored)")


def _seq_axis(graph: Graph, value: str) -> tuple[int, ...]:
    """The axes of output ``value`` that are the ``seq`` dim (attention probabilities have two)."""
    return tuple(i for i, d in enumerate(graph.values[value].shape) if d == "seq")


def _cut(x: Any, axes: tuple[int, ...], n: int) -> Any:
    return x[tuple(slice(0, n) if i in axes else slice(None) for i in range(max(axes) + 1))] if axes else x


def _grouped(out: Mapping[str, Any], kinds: Sequence[str]) -> dict[str, Any]:
    """``out`` with the outputs ``{kind}.{i}`` of each of ``kinds`` gathered into a tuple ``kind``, in
    transformers' order: after the other outputs, but an encoder-decoder's decoder (and cross) tuples before
    ``encoder_last_hidden_state``."""
    plain = [k for k in out if k.rpartition(".")[0] not in kinds]
    at = plain.index("encoder_last_hidden_state") if "encoder_last_hidden_state" in plain else len(plain)
    encoder = [k for k in kinds if k.startswith("encoder_")]
    names = [*plain[:at], *(k for k in kinds if k not in encoder), *plain[at:], *encoder]
    count = {kind: sum(k.rpartition(".")[0] == kind for k in out) for kind in kinds}
    return {k: tuple(out[f"{k}.{i}"] for i in range(count[k])) if k in count else out[k] for k in names}


__all__ = ["Model", "ModelOutput", "architecture_for"]
