"""Image layers: convolutions with Hugging Face module names, patch embeddings, pixel shuffle."""

from __future__ import annotations

from ..ir import Tensor, dims, fn
from ..ir.dims import Dim


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
                     bias: bool = True) -> tuple[Tensor, tuple[Dim, Dim]]:
    """ViT's patch embedding: a conv with kernel = stride = ``patch``, flattened row-major into
    tokens: [batch, channels, h, w] -> ([batch, (h // ph) * (w // pw), dim], the patch grid (h // ph, w // pw))."""
    x = conv2d(pixels, name, channels, dim, patch, patch, bias=bias)
    b, d, h, w = x.shape
    return x.reshape(b, d, dims.mul(h, w)).transpose(0, 2, 1), (h, w)


def tokens_to_image(x: Tensor, height: int, width: int) -> Tensor:
    """Patch tokens [batch, height * width, dim] back to a feature map [batch, dim, height, width]."""
    b, _, d = x.shape
    return x.transpose(0, 2, 1).reshape(b, d, height, width)


def pixel_shuffle(x: Tensor, factor: int) -> Tensor:
    """``torch.nn.PixelShuffle``: [batch, c * r * r, h, w] -> [batch, c, h * r, w * r]."""
    b, crr, h, w = x.shape
    c, r = crr // (factor * factor), factor
    return x.reshape(b, c, r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(b, c, h * r, w * r)


BICUBIC_A = -0.75  # torch's (and PIL's) cubic convolution coefficient


def bicubic_matrix(like: Tensor, out_len: Dim, in_len: int) -> Tensor:
    """The [out_len, in_len] matrix of ``torch.nn.functional.interpolate(mode="bicubic",
    align_corners=False)`` along one axis (source index ``(i + 0.5) * in / out - 0.5``, four taps
    clamped to the edges); ``out_len`` may be symbolic. Built in f32, returned in ``like``'s dtype."""
    g = like.builder
    i = g.add("iota", shape=[out_len], axis=0, dtype="f32")
    out_f = (i * 0.0 + 1.0).sum(0)
    src = (i + 0.5) * (float(in_len) / out_f) - 0.5
    base = fn.floor(src)
    t = src - base
    a = BICUBIC_A

    def near(x: Tensor) -> Tensor:  # |x| <= 1
        return ((x * (a + 2) - (a + 3)) * x) * x + 1.0

    def far(x: Tensor) -> Tensor:  # 1 < |x| < 2
        return ((x * a - 5 * a) * x + 8 * a) * x - 4 * a

    weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
    columns = g.add("iota", shape=[1, in_len], axis=1, dtype="f32")
    matrix = None
    for k, w in enumerate(weights):
        index = fn.minimum(fn.maximum(base + float(k - 1), g.constant(0.0, "f32")), g.constant(float(in_len - 1), "f32"))
        term = fn.where(fn.eq(index.reshape(out_len, 1), columns), w.reshape(out_len, 1), g.constant(0.0, "f32"))
        matrix = term if matrix is None else matrix + term
    return matrix.cast(like.dtype)


def interpolate_positions(table: Tensor, grid: int, height: Dim, width: Dim) -> Tensor:
    """Learned positions [grid * grid, dim] of a square patch grid, resized bicubically to
    [height * width, dim] (transformers' ``interpolate_pos_encoding`` of ViT, DeiT, CLIP)."""
    d = table.shape[-1]
    rows, columns = bicubic_matrix(table, height, grid), bicubic_matrix(table, width, grid)
    x = (rows @ table.reshape(grid, grid * d)).reshape(height, grid, d).transpose(0, 2, 1)  # [height, dim, grid]
    x = x @ columns.transpose(1, 0)  # [height, dim, width]
    return x.transpose(0, 2, 1).reshape(dims.mul(height, width), d)
