"""The framing shared by image encoders (ViT, DeiT, the CLIP vision tower): ``pixel_values``
[batch, num_channels, height, width] in, at the image size of the config, or at any size with
``interpolate_pos_encoding`` (the learned positions resized bicubically, as transformers'
``forward(interpolate_pos_encoding=True)``).

A family subclasses `VisionEncoder` and writes ``backbone(pixels, masked, pooler=...)`` (patch
embeddings and encoder stack -> ``{"last_hidden_state", "pooler_output"?}``), ``head`` and the weight
rules. ``masked-image-modeling`` adds the input ``bool_masked_pos`` [batch, patches] (0/1 or bool;
default: no patch masked), as transformers' ``*ForMaskedImageModeling``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import PositiveInt

from ..errors import ConfigError
from ..ir import Graph, GraphBuilder, Tensor, fn
from ..ir.dims import Dim
from ..ir.dtypes import DType, as_dtype
from ..layers.vision import interpolate_positions
from .base import ArchConfig, Architecture
from .inputs import FLOAT, Inputs, InputSpec


class VisionConfig(ArchConfig):
    """Image geometry keys of transformers' vision configs (``int`` or ``[height, width]``)."""

    image_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 224
    patch_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 16
    num_channels: PositiveInt = 3
    interpolate_pos_encoding: bool = False  # isoform: take any image size (transformers' forward flag)

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

    @property
    def position_grid(self) -> int:
        """Side of the square patch grid the learned positions cover (what interpolation resizes)."""
        side = math.isqrt(self.num_patches)
        if side * side != self.num_patches:
            raise ConfigError(f"interpolate_pos_encoding needs a square patch grid, image_size {self.image_hw} with "
                              f"patch_size {self.patch_hw} gives {self.grid}")
        return side

    def pixel_spec(self, batch: str = "batch") -> InputSpec:
        """``pixel_values`` [batch, channels, height, width]: the configured size, or any size when
        interpolating positions."""
        hw = ("height", "width") if self.interpolate_pos_encoding else self.image_hw
        return InputSpec("pixel_values", (batch, self.num_channels, *hw), FLOAT)

    def patch_positions(self, table: Tensor, special: int, grid: tuple[Dim, Dim]) -> Tensor:
        """Learned positions [special + num_patches, dim] for an image's patch ``grid``: as they are,
        or, when interpolating, the patch rows resized to the grid (the ``special`` leading tokens'
        rows kept)."""
        if not self.interpolate_pos_encoding:
            return table
        return fn.concat(table[:special], interpolate_positions(table[special:], self.position_grid, *grid), axis=0)


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
        specs = [c.pixel_spec()]
        if task == "masked-image-modeling":
            if c.interpolate_pos_encoding:
                raise ConfigError("interpolate_pos_encoding with masked-image-modeling is not supported: the "
                                  "reconstruction needs the configured image_size")
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
