"""Image layers: convolutions with Hugging Face module names, patch embeddings, pixel shuffle."""

from __future__ import annotations

from ..ir import Tensor, fn


def conv2d(x: Tensor, name: str, in_channels: int, out_channels: int, kernel: int | tuple[int, int],
           stride: int | tuple[int, int] = 1, *, bias: bool = True) -> Tensor:
    """``torch.nn.Conv2d`` without padding: ``<name>.weight`` [out, in, kh, kw] (torch's layout, so
    the weight map is the identity) and ``<name>.bias``; x [batch, in, h, w] -> [batch, out, h', w']."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    g = x.builder
    y = fn.conv(x, g.param(f"{name}.weight", [out_channels, in_channels, kh, kw]), stride=[sh, sw],
                padding=[[0, 0], [0, 0]], dilation=[1, 1], groups=1)
    return y + g.param(f"{name}.bias", [out_channels]).reshape(1, out_channels, 1, 1) if bias else y


def patch_embeddings(pixels: Tensor, name: str, channels: int, dim: int, patch: tuple[int, int], *,
                     bias: bool = True) -> Tensor:
    """ViT's patch embedding: a conv with kernel = stride = ``patch``, flattened row-major into
    tokens: [batch, channels, h, w] -> [batch, (h // ph) * (w // pw), dim]."""
    x = conv2d(pixels, name, channels, dim, patch, patch, bias=bias)
    b, d, h, w = x.shape
    return x.reshape(b, d, h * w).transpose(0, 2, 1)


def tokens_to_image(x: Tensor, height: int, width: int) -> Tensor:
    """Patch tokens [batch, height * width, dim] back to a feature map [batch, dim, height, width]."""
    b, _, d = x.shape
    return x.transpose(0, 2, 1).reshape(b, d, height, width)


def pixel_shuffle(x: Tensor, factor: int) -> Tensor:
    """``torch.nn.PixelShuffle``: [batch, c * r * r, h, w] -> [batch, c, h * r, w * r]."""
    b, crr, h, w = x.shape
    c, r = crr // (factor * factor), factor
    return x.reshape(b, c, r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(b, c, h * r, w * r)
