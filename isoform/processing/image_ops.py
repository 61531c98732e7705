"""Image operations on channels-first arrays, ports of ``transformers.image_transforms`` as its
PIL backend runs them (Pillow for resizing), and the conversion to framework tensors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import PIL.Image

from isoform.errors import BackendError, InputError

FIRST, LAST = "channels_first", "channels_last"
CHANNELS = (1, 3, 4)  # channel counts an image axis may have


def flatten(images: Any) -> list[PIL.Image.Image | np.ndarray]:
    """The images of a call as a flat list (PIL images and 3-dim arrays)."""
    if not isinstance(images, list | tuple):
        return as_images(images, "images", batch=True)
    if not images:
        raise InputError("no images: got an empty list")
    flat: list[PIL.Image.Image | np.ndarray] = []
    for i, item in enumerate(images):
        if isinstance(item, list | tuple):
            for j, inner in enumerate(item):
                flat.extend(as_images(inner, f"images[{i}][{j}]", batch=False))
        else:
            flat.extend(as_images(item, f"images[{i}]", batch=True))
    if not flat:
        raise InputError("no images: got only empty lists")
    return flat


def as_images(x: Any, where: str, batch: bool) -> list[PIL.Image.Image | np.ndarray]:
    if isinstance(x, PIL.Image.Image):
        return [x]
    if not hasattr(x, "__array__"):
        raise InputError(f"{where}: expected a PIL image or an array, got {type(x).__name__}")
    try:
        array = np.asarray(x)
    except Exception as e:
        raise InputError(f"{where}: cannot read {type(x).__name__} as an array: {e}") from e
    if array.dtype.kind not in "biuf":
        raise InputError(f"{where}: expected a numeric image array, got dtype {array.dtype}")
    if array.ndim == 3:
        return [array]
    if array.ndim == 4 and batch:
        return list(array)
    dims = "3 dimensions (HWC or CHW)" + (" or 4 (a batch)" if batch else "")
    raise InputError(f"{where} has shape {array.shape}: an image array must have {dims}")


def infer_channel_format(array: np.ndarray, where: str) -> str:
    """transformers' ``infer_channel_dimension_format(num_channels=(1, 3, 4))``: first axis wins a tie."""
    if array.shape[0] in CHANNELS:
        return FIRST
    if array.shape[-1] in CHANNELS:
        return LAST
    raise InputError(
        f"{where} has shape {array.shape}: no channel axis of size 1, 3 or 4 first or last "
        "(pass input_data_format if the layout is right)"
    )


def convert_to_rgb(image: PIL.Image.Image | np.ndarray, fmt: str | None, where: str) -> np.ndarray:
    """transformers' ``convert_to_rgb``: transparency composited onto white; arrays keep their layout."""
    if isinstance(image, PIL.Image.Image):
        if "A" in image.getbands() or image.info.get("transparency") is not None:
            rgba = image.convert("RGBA")
            white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.array(PIL.Image.alpha_composite(white, rgba).convert("RGB"))
        return np.array(image.convert("RGB"))
    axis = 0 if (fmt or infer_channel_format(image, where)) == FIRST else -1
    hwc = np.moveaxis(image, axis, -1)
    if hwc.shape[-1] == 1:
        rgb = np.repeat(hwc, 3, axis=-1)
    elif hwc.shape[-1] == 4:
        if np.issubdtype(hwc.dtype, np.floating) and (hwc.min() < 0.0 or hwc.max() > 1.0):
            raise InputError(
                f"{where}: a float RGBA image must be in [0, 1] to be converted to RGB, "
                f"got [{hwc.min()}, {hwc.max()}]"
            )
        white = 255 if np.issubdtype(hwc.dtype, np.integer) else 1.0
        alpha = hwc[..., 3:4] / white
        composite = alpha * hwc[..., :3] + (1 - alpha) * white
        rgb = np.round(composite).astype(hwc.dtype) if white == 255 else composite.astype(hwc.dtype)
    else:
        rgb = hwc
    return np.moveaxis(rgb, -1, axis)


def rescale(array: np.ndarray, scale: float) -> np.ndarray:
    return (array.astype(np.float64) * scale).astype(np.float32)


def pil_needs_rescale(array: np.ndarray, where: str) -> bool:
    """transformers' ``_rescale_for_pil_conversion``: floats in [0, 1] are scaled to [0, 255]."""
    if array.dtype == np.uint8:
        return False
    with np.errstate(invalid="ignore"):
        integral = np.allclose(array, array.astype(int))
    if integral:
        if np.all(array >= 0) and np.all(array <= 255):
            return False
        raise InputError(
            f"{where}: integral pixel values must be in [0, 255] to be resized, "
            f"got [{array.min()}, {array.max()}]"
        )
    if np.all(array >= 0) and np.all(array <= 1):
        return True
    raise InputError(
        f"{where}: non-integral pixel values must be in [0, 1] to be resized, "
        f"got [{array.min()}, {array.max()}]"
    )


def resize(array: np.ndarray, size: tuple[int, int], resample: int, where: str) -> np.ndarray:
    """transformers' ``resize``: through a ``uint8`` PIL image, back to the input's scale."""
    scaled = pil_needs_rescale(array, where)
    hwc = np.transpose(array, (1, 2, 0))
    if hwc.shape[-1] == 1:
        hwc = hwc[..., 0]
    if scaled:
        hwc = rescale(hwc, 255)
    pil = PIL.Image.fromarray(hwc.astype(np.uint8))
    out = np.array(pil.resize((size[1], size[0]), resample=PIL.Image.Resampling(resample), reducing_gap=None))
    if out.ndim == 2:
        out = out[..., None]
    out = np.transpose(out, (2, 0, 1))
    return rescale(out, 1 / 255) if scaled else out


def center_crop(array: np.ndarray, crop_height: int, crop_width: int) -> np.ndarray:
    """transformers' ``center_crop``: zero-padded when the image is smaller than the crop."""
    height, width = array.shape[-2:]
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    bottom, right = top + crop_height, left + crop_width
    if top >= 0 and bottom <= height and left >= 0 and right <= width:
        return array[..., top:bottom, left:right]
    new_height, new_width = max(crop_height, height), max(crop_width, width)
    padded = np.zeros_like(array, shape=(*array.shape[:-2], new_height, new_width))
    top_pad, left_pad = math.ceil((new_height - height) / 2), math.ceil((new_width - width) / 2)
    padded[..., top_pad : top_pad + height, left_pad : left_pad + width] = array
    top, bottom, left, right = top + top_pad, bottom + top_pad, left + left_pad, right + left_pad
    return padded[..., max(0, top) : min(new_height, bottom), max(0, left) : min(new_width, right)]


def size_with_aspect_ratio(height: int, width: int, size: int, max_size: int) -> tuple[int, int]:
    """transformers' ``get_size_with_aspect_ratio`` (``{shortest_edge, longest_edge}`` sizes)."""
    raw_size = None
    short, long = float(min(height, width)), float(max(height, width))
    if long / short * size > max_size:
        raw_size = max_size * short / long
        size = round(raw_size)
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        return int((raw_size if raw_size is not None else size) * height / width), size
    return size, int((raw_size if raw_size is not None else size) * width / height)


def to_tensor(array: np.ndarray, kind: str) -> Any:
    if kind == "np":
        return array
    module = {"pt": "torch", "jax": "jax", "tf": "tensorflow"}[kind]
    try:
        if kind == "pt":
            import torch

            return torch.from_numpy(array)
        if kind == "jax":
            import jax.numpy as jnp

            return jnp.asarray(array)
        from ..environment import quiet_tensorflow

        quiet_tensorflow()
        import tensorflow as tf

        return tf.constant(array)
    except ImportError as e:
        raise BackendError(f"return_tensors={kind!r} needs {module}, which is not installed: {e}") from e
