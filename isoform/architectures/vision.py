"""The framing shared by image encoders (ViT, DeiT, the CLIP vision tower): ``pixel_values``
[batch, num_channels, height, width] in, at the image size of the config.

A family subclasses `VisionEncoder` and writes ``backbone(pixels, masked, pooler=...)`` (patch
embeddings and encoder stack -> ``{"last_hidden_state", "pooler_output"?}``), ``head`` and the weight
rules. ``masked-image-modeling`` adds the input ``bool_masked_pos`` [batch, patches] (0/1 or bool;
default: no patch masked), as transformers' ``*ForMaskedImageModeling``.
"""

from __future__ import annotations

import numpy as np
from pydantic import PositiveInt

from ..errors import ConfigError
from ..ir import Graph, GraphBuilder, Tensor
from ..ir.dtypes import DType, as_dtype
from .base import ArchConfig, Architecture
from .inputs import FLOAT, Inputs, InputSpec


class VisionConfig(ArchConfig):
    """Image geometry keys of transformers' vision configs (``int`` or ``[height, width]``)."""

    image_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 224
    patch_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 16
    num_channels: PositiveInt = 3

    @property
    def image_hw(self) -> tuple[int, int]:
        s = self.image_size
        return (s, s) if isinstance(s, int) else tuple(s)

    @property
    def patch_hw(self) -> tuple[int, int]:
        p = self.patch_size
        return (p, p) if isinstance(p, int) else tuple(p)

    @property
    def grid(self) -> tuple[int, int]:
        """Patches along height and width (the conv drops a remainder, as torch's does)."""
        (h, w), (ph, pw) = self.image_hw, self.patch_hw
        if ph > h or pw > w:
            raise ConfigError(f"patch_size {self.patch_hw} is larger than image_size {self.image_hw}")
        return h // ph, w // pw

    @property
    def num_patches(self) -> int:
        h, w = self.grid
        return h * w


class VisionEncoder(Architecture):
    """Base of image encoders; see the module docstring."""

    config: VisionConfig

    def backbone(self, pixels: Tensor, masked: Tensor | None, *, pooler: bool) -> dict[str, Tensor]:
        raise NotImplementedError

    def head(self, task: str, states: dict[str, Tensor], mask: Tensor | None = None) -> dict[str, Tensor]:
        raise NotImplementedError

    @property
    def max_length(self) -> None:
        return None

    def input_specs(self, task: str | None) -> Inputs:
        c = self.config
        specs = [InputSpec("pixel_values", ("batch", c.num_channels, *c.image_hw), FLOAT)]
        if task == "masked-image-modeling":
            specs.append(InputSpec("bool_masked_pos", ("batch", c.num_patches), high=2, bound="2 (values must be 0 or 1)",
                                   default=lambda a: np.zeros((len(a["pixel_values"]), c.num_patches), np.int64)))
        return Inputs(specs)

    def build(self, task: str | None = None, dtype: DType | str = "float32") -> Graph:
        self.check_task(task)
        g = GraphBuilder(f"{self.model_type}:{task or 'base'}", dtype=as_dtype(dtype),
                         metadata={"model_type": self.model_type, "task": task})
        pixels, *masked = (spec.declare(g) for spec in self.input_specs(task).specs)
        states = self.backbone(pixels, masked[0] if masked else None, pooler=self.has_pooler(task))
        for name, t in (states if task is None else self.head(task, states)).items():
            g.output(name, t)
        return g.build()
