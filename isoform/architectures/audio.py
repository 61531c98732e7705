"""The framing shared by speech encoders on raw audio (wav2vec2 and its kin: a conv feature encoder
turns samples into frames, a Transformer runs over the frames): ``input_values`` [batch, samples]
(float waveforms) and ``attention_mask`` [batch, samples] (1 = audio, 0 = padding; default all
ones) in.

A family subclasses `AudioEncoder` and writes ``backbone(values, mask)`` (-> `AudioStates`),
``head``, ``rules`` and, if its length formula is not the config's conv stack, ``frame_steps``.
Frames follow transformers: a row's frame count is the conv length formula applied to the number of
ones in its mask (`isoform.layers.audio.frame_mask`); `check_inputs` rejects audio shorter than one
frame (transformers would fail in the conv, or mask a wrapped-around frame).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from pydantic import PositiveInt, model_validator

from ..errors import InputError
from ..ir import Graph, GraphBuilder, Tensor
from ..ir.dtypes import DType, as_dtype
from ..layers.audio import ConvLength, samples_needed
from .base import ArchConfig, Architecture
from .inputs import FLOAT, Inputs, InputSpec, attention_mask


class AudioConfig(ArchConfig):
    """The conv feature encoder keys of transformers' speech configs (one entry per conv layer)."""

    conv_dim: tuple[PositiveInt, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple[PositiveInt, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[PositiveInt, ...] = (10, 3, 3, 3, 3, 2, 2)

    @model_validator(mode="after")
    def _conv_layers(self) -> AudioConfig:
        n = {len(self.conv_dim), len(self.conv_stride), len(self.conv_kernel)}
        if n != {len(self.conv_dim)} or not self.conv_dim:
            raise ValueError(f"conv_dim, conv_stride and conv_kernel must have one (and the same number of) entries per "
                             f"conv layer, got {len(self.conv_dim)}, {len(self.conv_stride)} and {len(self.conv_kernel)}")
        return self

    @property
    def conv_steps(self) -> list[ConvLength]:
        return list(zip(self.conv_kernel, self.conv_stride))


@dataclass
class AudioStates:
    """What a backbone hands the heads."""

    outputs: dict[str, Tensor]  # the bare model's outputs (transformers' names)
    frames: Tensor  # bool [batch, frames]: the frames of real audio
    layers: list[Tensor] = field(default_factory=list)  # transformers' hidden_states: encoder input, then each layer's output


class AudioEncoder(Architecture):
    """Base of raw-audio encoders; see the module docstring."""

    config: AudioConfig
    padding_safe = False  # per-utterance norms in the feature encoder see the padding, as in transformers

    def backbone(self, values: Tensor, mask: Tensor) -> AudioStates:
        raise NotImplementedError

    def head(self, task: str, states: AudioStates, mask: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def frame_steps(self, task: str | None) -> list[ConvLength]:
        """The length formula of the frames ``task`` pools or masks: the conv feature encoder."""
        return self.config.conv_steps

    def min_samples(self, task: str | None) -> int:
        """The fewest samples that give one frame."""
        return samples_needed(self.frame_steps(task))[0]

    @property
    def max_length(self) -> None:
        return None

    def input_specs(self, task: str | None) -> Inputs:
        return Inputs([InputSpec("input_values", ("batch", "samples"), FLOAT),
                       attention_mask(("batch", "samples"), "input_values")])

    def check_inputs(self, inputs: Mapping[str, np.ndarray], task: str | None) -> None:
        need = self.min_samples(task)
        values, mask = inputs["input_values"], inputs.get("attention_mask")
        what = f"the {need} samples one frame needs (conv_kernel {list(self.config.conv_kernel)}, " \
               f"conv_stride {list(self.config.conv_stride)})"
        if values.shape[1] < need:
            raise InputError(f"input_values has {values.shape[1]} samples, fewer than {what}")
        if mask is not None:
            counts = np.asarray(mask).astype(np.int64).sum(1)
            short = np.flatnonzero(counts < need)
            if short.size:
                row = int(short[0])
                raise InputError(f"attention_mask row {row} marks {int(counts[row])} samples as audio, fewer than {what}")

    def build(self, task: str | None = None, dtype: DType | str = "float32") -> Graph:
        self.check_task(task)
        g = GraphBuilder(f"{self.model_type}:{task or 'base'}", dtype=as_dtype(dtype),
                         metadata={"model_type": self.model_type, "task": task})
        values, mask = (spec.declare(g) for spec in self.input_specs(task).specs)
        states = self.backbone(values, mask)
        for name, t in (states.outputs if task is None else self.head(task, states, mask)).items():
            g.output(name, t)
        return g.build()
