"""Speech layers: 1-d convolutions with Hugging Face module names, the norms of conv feature
encoders, GLU, the frame mask of a conv stack, and the weight-norm rule of positional convs.

Layout: conv stacks run on [batch, channels, time] (torch's NC* layout, so conv weights load as
they are); the Transformer on top runs on [batch, frames, dim].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ir import Tensor, dims, fn
from ..weights import Rule, WeightNorm
from ..weights.transforms import Shape

ConvLength = tuple[int, int]  # (kernel, stride) of one step of a length formula floor((L - kernel) / stride) + 1


def conv1d(x: Tensor, name: str, in_channels: int, out_channels: int, kernel: int, stride: int = 1, *,
           padding: tuple[int, int] = (0, 0), dilation: int = 1, groups: int = 1, bias: bool = True) -> Tensor:
    """``torch.nn.Conv1d``: ``<name>.weight`` [out, in / groups, kernel] (torch's layout) and
    ``<name>.bias``; x [batch, in, time] -> [batch, out, time']. ``padding`` is (left, right)."""
    g = x.builder
    y = fn.conv(x, g.param(f"{name}.weight", [out_channels, in_channels // groups, kernel]), stride=[stride],
                padding=[list(padding)], dilation=[dilation], groups=groups)
    return y + g.param(f"{name}.bias", [out_channels]).reshape(1, out_channels, 1) if bias else y


def group_norm(x: Tensor, name: str, channels: int, groups: int, eps: float = 1e-5) -> Tensor:
    """``torch.nn.GroupNorm`` on x [batch, channels, time]: each group of ``channels / groups``
    channels normalized over its channels and all of time, then ``<name>.weight`` / ``<name>.bias``
    per channel."""
    b, c, t = x.shape
    y = x if groups == channels else x.reshape(b, groups, dims.mul(channels // groups, t))
    y = fn.layer_norm(y, eps=eps)
    y = y if groups == channels else y.reshape(b, c, t)
    g = x.builder
    return y * g.param(f"{name}.weight", [channels]).reshape(1, channels, 1) + g.param(f"{name}.bias", [channels]).reshape(1, channels, 1)


def channel_layer_norm(x: Tensor, name: str, channels: int, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the channels of x [batch, channels, time] (``<name>.weight`` / ``<name>.bias``),
    as wav2vec2's layer-norm conv layers: transpose, ``nn.LayerNorm``, transpose back."""
    g = x.builder
    y = fn.layer_norm(x.transpose(0, 2, 1), g.param(f"{name}.weight", [channels]), g.param(f"{name}.bias", [channels]), eps=eps)
    return y.transpose(0, 2, 1)


def glu(x: Tensor, axis: int = 1) -> Tensor:
    """``torch.nn.functional.glu``: the first half of ``axis`` times the sigmoid of the second."""
    half = x.shape[axis] // 2
    index = [slice(None)] * x.ndim
    a, b = list(index), list(index)
    a[axis], b[axis] = slice(0, half), slice(half, None)
    return x[tuple(a)] * fn.sigmoid(x[tuple(b)])


def samples_needed(steps: Sequence[ConvLength]) -> tuple[int, int]:
    """``(first, step)``: frame ``t`` of a conv stack exists (its length formula, applied step by step,
    gives more than ``t`` frames) exactly when the input has at least ``first + step * t`` samples.
    ``floor((L - k) / s) + 1 >= m`` is ``L >= k + s * (m - 1)``, so the bound is affine in ``t``."""
    def need(frames: int) -> int:
        for kernel, stride in reversed(steps):
            frames = kernel + stride * (frames - 1)
        return frames

    return need(1), need(2) - need(1)


def frame_mask(mask: Tensor, frames: Tensor, steps: Sequence[ConvLength]) -> Tensor:
    """Which of the ``frames`` [batch, time, ...] (axis 1) are audio: bool [batch, time]. The length
    of each row is the conv length formula (``steps``) applied to the count of ones in its samples
    ``mask`` [batch, samples], as transformers' ``_get_feature_vector_attention_mask``; computed
    without division (see `samples_needed`), in integers."""
    g = mask.builder
    first, step = samples_needed(steps)
    count = mask.cast("i64").sum(1, keepdims=True)  # [batch, 1]
    t = g.add("iota", shape=[mask.shape[0], frames.shape[1]], axis=1, dtype="i64")
    return fn.ge(count, t * step + first)


class WeightNormRule(Rule):
    """A weight-normalized tensor: checkpoint magnitude ``g`` and direction ``v`` -> one graph weight
    through `isoform.weights.WeightNorm` over ``dim`` (and back when saving)."""

    def __init__(self, g: str, v: str, param: str, dim: int, *, prefixed: bool = True):
        super().__init__([g, v], [param], prefixed=prefixed)
        self.norm = WeightNorm(dim)

    def __repr__(self) -> str:
        return f"WeightNormRule({self.hf[0]!r}, {self.hf[1]!r}, {self.params[0]!r}, dim={self.norm.dim})"

    def forward_shapes(self, hf_shapes: Sequence[Shape], sizes: Sequence[int] | None = None) -> list[Shape]:
        return [self.norm.join_shape(*hf_shapes)]

    def forward(self, arrays: Sequence[np.ndarray], sizes: Sequence[int] | None = None) -> list[np.ndarray]:
        return [self.norm.join(*arrays)]

    def backward_shapes(self, param_shapes: Sequence[Shape]) -> list[Shape]:
        return list(self.norm.split_shapes(param_shapes[0]))

    def backward(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(self.norm.split(arrays[0]))


def weight_norm_rules(name: str, param: str | None = None, dim: int = 2, *, prefixed: bool = True) -> list[Rule]:
    """Rules of ``<name>.weight`` under weight norm, in both checkpoint layouts: torch's
    parametrization (``<name>.parametrizations.weight.original0`` / ``original1``, what transformers
    v5 saves, so saving writes it) and the older ``<name>.weight_g`` / ``<name>.weight_v``."""
    param = param or f"{name}.weight"
    return [WeightNormRule(f"{name}.parametrizations.weight.original0", f"{name}.parametrizations.weight.original1", param,
                           dim, prefixed=prefixed),
            WeightNormRule(f"{name}.weight_g", f"{name}.weight_v", param, dim, prefixed=prefixed)]
