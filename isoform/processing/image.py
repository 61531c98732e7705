"""``ImageProcessor``: the preprocessing of transformers' PIL-backend image processors for ViT, DeiT
and CLIP (``ViTImageProcessorPil``, ``DeiTImageProcessorPil``, ``CLIPImageProcessorPil``).

    proc = isoform.ImageProcessor.load("vit-base")        # alias, hub id or directory
    batch = proc([pil_image, hwc_uint8_array], return_tensors="np")
    batch["pixel_values"]                                 # float32 [batch, 3, 224, 224]

Each image is made channels-first (a PIL image, or an HWC or CHW array whose channel axis is the
one of size 1, 3 or 4, the first when both are), optionally converted to RGB, then resized with
Pillow, center-cropped, rescaled and normalized, step for step as transformers' ``PilBackend``:
float images in [0, 1] go through Pillow as ``uint8`` and come back divided by 255, rescaling
multiplies in float64, normalization runs in the image's float dtype.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import PIL.Image

from isoform import hub
from isoform.errors import ConfigError, InputError
from isoform.staging import write_text

from .image_ops import (
    CHANNELS,
    FIRST,
    LAST,
    center_crop,
    convert_to_rgb,
    flatten,
    infer_channel_format,
    rescale,
    resize,
    size_with_aspect_ratio,
    to_tensor,
)

__all__ = ["CONFIG_NAME", "DEFAULTS", "TENSOR_TYPES", "BatchFeature", "ImageProcessor"]

CONFIG_NAME = "preprocessor_config.json"
TENSOR_TYPES = ("np", "pt", "jax", "tf")
RESAMPLE_NAMES = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}

_IMAGENET_STANDARD = (0.5, 0.5, 0.5)
_COMMON: dict[str, Any] = {
    "do_resize": True, "do_center_crop": False, "crop_size": None, "do_rescale": True,
    "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": _IMAGENET_STANDARD,
    "image_std": _IMAGENET_STANDARD, "do_convert_rgb": False, "default_to_square": True,
}  # fmt: skip
#: The class defaults of transformers' ``<type>Pil`` classes: a missing or null key takes these.
DEFAULTS: dict[str, dict[str, Any]] = {
    "ViTImageProcessor": {**_COMMON, "size": {"height": 224, "width": 224}, "resample": 2},
    "DeiTImageProcessor": {
        **_COMMON, "size": {"height": 256, "width": 256}, "resample": 3, "do_center_crop": True,
        "crop_size": {"height": 224, "width": 224},
    },
    "CLIPImageProcessor": {
        **_COMMON, "size": {"shortest_edge": 224}, "resample": 3, "do_center_crop": True,
        "crop_size": {"height": 224, "width": 224}, "image_mean": (0.48145466, 0.4578275, 0.40821073),
        "image_std": (0.26862954, 0.26130258, 0.27577711), "do_convert_rgb": True, "default_to_square": False,
    },
}  # fmt: skip
_MODEL_TYPES = {"vit": "ViTImageProcessor", "deit": "DeiTImageProcessor", "clip": "CLIPImageProcessor"}
_SIZE_FORMS = (
    {"height", "width"}, {"shortest_edge"}, {"shortest_edge", "longest_edge"}, {"max_height", "max_width"},
)  # fmt: skip
_SETTINGS = (
    "do_resize", "size", "default_to_square", "resample", "do_center_crop", "crop_size", "do_rescale",
    "rescale_factor", "do_normalize", "image_mean", "image_std", "do_convert_rgb", "input_data_format",
)  # fmt: skip


class BatchFeature(dict):
    """A ``dict`` of model inputs (``pixel_values``) with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class ImageProcessor:
    """Resize, center-crop, rescale and normalize images as transformers' PIL-backend processors do.

    ``ImageProcessor("CLIPImageProcessor", size={"shortest_edge": 64})`` takes the keys of a
    ``preprocessor_config.json``; a missing or null key takes the type's transformers default
    (:data:`DEFAULTS`). Bad values raise :class:`~isoform.errors.ConfigError` naming the key; keys
    isoform does not use are kept in ``extra`` and written back by :meth:`save`.
    """

    def __init__(self, image_processor_type: str = "ViTImageProcessor", **settings: Any) -> None:
        kind = _base_type(image_processor_type)
        defaults = DEFAULTS[kind]
        settings = dict(settings)
        if settings.get("do_pad") is not None and _bool(settings["do_pad"], "do_pad"):
            raise ConfigError("do_pad=true is not supported (ViT, DeiT and CLIP processors do not pad)")
        if kind == "CLIPImageProcessor" and settings.get("use_square_size"):
            # transformers' KOSMOS-2 compatibility: a square of the class default's shortest edge
            settings.pop("use_square_size")
            settings["size"] = {"height": 224, "width": 224}
        self.extra: dict[str, Any] = {k: v for k, v in settings.items() if k not in _SETTINGS}

        def get(key: str) -> Any:
            value = settings.get(key)
            return defaults[key] if value is None else value

        self.image_processor_type = kind
        self.do_resize: bool = _bool(get("do_resize"), "do_resize")
        square = _bool(get("default_to_square"), "default_to_square")  # what an int size means
        self.size: dict[str, int] = _size_dict(get("size"), "size", square)
        self.resample: int = _resample(get("resample"))
        self.do_center_crop: bool = _bool(get("do_center_crop"), "do_center_crop")
        crop = get("crop_size")
        self.crop_size: dict[str, int] | None = None if crop is None else _size_dict(crop, "crop_size", True)
        if self.do_center_crop and (self.crop_size is None or set(self.crop_size) != {"height", "width"}):
            raise ConfigError(
                f"crop_size must be {{height, width}} when do_center_crop is true, got {crop!r}"
            )
        self.do_rescale: bool = _bool(get("do_rescale"), "do_rescale")
        self.rescale_factor: float = _number(get("rescale_factor"), "rescale_factor")
        self.do_normalize: bool = _bool(get("do_normalize"), "do_normalize")
        self.image_mean: float | tuple[float, ...] = _mean_std(get("image_mean"), "image_mean")
        self.image_std: float | tuple[float, ...] = _mean_std(get("image_std"), "image_std")
        mean, std = self.image_mean, self.image_std
        if self.do_normalize and isinstance(mean, tuple) and isinstance(std, tuple) and len(mean) != len(std):
            raise ConfigError(f"image_mean has {len(mean)} values but image_std has {len(std)}")
        self.do_convert_rgb: bool = _bool(get("do_convert_rgb"), "do_convert_rgb")
        self.input_data_format: str | None = _channel_format(
            settings.get("input_data_format"), "input_data_format"
        )

    # ----- loading and saving ---------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | os.PathLike, *, revision: str | None = None) -> ImageProcessor:
        """Load from a local directory, an isoform alias or a hub id (see ``isoform.hub.resolve``)."""
        return cls.from_directory(hub.resolve(name_or_path, revision=revision))

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> ImageProcessor:
        """Read ``preprocessor_config.json`` in ``directory``.

        Without ``image_processor_type`` the type comes, as in transformers' ``AutoImageProcessor``,
        from ``feature_extractor_type`` or else from ``config.json``'s ``model_type``.
        """
        path, config = read_preprocessor_config(directory, ("image_processor_type", "feature_extractor_type"), _MODEL_TYPES)
        try:
            return cls.from_dict(config)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ImageProcessor:
        """Build from the contents of a ``preprocessor_config.json``."""
        config = dict(config)
        kind = config.pop("image_processor_type", None)
        if kind is None:
            feature = config.pop("feature_extractor_type", None)
            if not isinstance(feature, str):
                raise ConfigError(f"image_processor_type is missing (feature_extractor_type is {feature!r})")
            kind = feature.replace("FeatureExtractor", "ImageProcessor")
        return cls(kind, **config)

    def to_dict(self) -> dict[str, Any]:
        """The settings as ``preprocessor_config.json`` keys (unused keys from ``extra`` included)."""
        config = dict(self.extra)
        config.update(
            image_processor_type=self.image_processor_type, do_resize=self.do_resize, size=dict(self.size),
            resample=self.resample, do_center_crop=self.do_center_crop, do_rescale=self.do_rescale,
            rescale_factor=self.rescale_factor, do_normalize=self.do_normalize,
            image_mean=_json_values(self.image_mean), image_std=_json_values(self.image_std),
            do_convert_rgb=self.do_convert_rgb,
        )  # fmt: skip
        if self.crop_size is not None:
            config["crop_size"] = dict(self.crop_size)
        if self.input_data_format is not None:
            config["input_data_format"] = self.input_data_format
        return dict(sorted(config.items()))

    def save(self, directory: str | os.PathLike) -> pathlib.Path:
        """Write ``preprocessor_config.json`` (loadable by transformers' ``AutoImageProcessor``) to
        ``directory``, created if needed; returns the file's path."""
        return write_preprocessor_config(directory, self.to_dict())

    def __repr__(self) -> str:
        hidden = {"image_processor_type", *self.extra}
        shown = {k: v for k, v in self.to_dict().items() if k not in hidden}
        shown["resample"] = RESAMPLE_NAMES[self.resample]
        settings = ", ".join(f"{k}={v}" for k, v in shown.items())
        return f"ImageProcessor({self.image_processor_type!r}, {settings})"

    # ----- processing -----------------------------------------------------------------------------
    def __call__(
        self, images: Any, return_tensors: str | None = None, *, input_data_format: str | None = None
    ) -> BatchFeature:
        """Preprocess one image or a list of them into ``{"pixel_values": ...}``.

        ``images``: a PIL image, an array of 3 dims (HWC or CHW; any numeric dtype, floats in [0, 1]
        or integral values in [0, 255] when resizing) or 4 (a batch), or a list of those (or of
        lists of images). ``return_tensors``: ``"np"``, ``"pt"``, ``"jax"`` or ``"tf"`` for one
        float32 ``[batch, channels, height, width]`` tensor; ``None`` (as transformers) for a list of
        float32 ``[channels, height, width]`` arrays. ``input_data_format`` (``"channels_first"``
        or ``"channels_last"``) fixes the channel axis of arrays instead of inferring it.
        """
        if return_tensors is not None and return_tensors not in TENSOR_TYPES:
            raise InputError(
                f"return_tensors must be one of {', '.join(TENSOR_TYPES)} or None, got {return_tensors!r}"
            )
        try:
            fmt = _channel_format(input_data_format, "input_data_format")
        except ConfigError as e:
            raise InputError(str(e)) from None
        fmt = fmt or self.input_data_format
        pixels = [self._process(image, f"image {i}", fmt) for i, image in enumerate(flatten(images))]
        if return_tensors is None:
            return BatchFeature(pixel_values=pixels)
        shapes = sorted({p.shape for p in pixels})
        if len(shapes) > 1:
            raise InputError(
                f"cannot stack images of different shapes {shapes} into one tensor: enable do_resize or "
                "do_center_crop, or pass return_tensors=None for a list"
            )
        return BatchFeature(pixel_values=to_tensor(np.stack(pixels), return_tensors))

    def _process(self, image: PIL.Image.Image | np.ndarray, where: str, fmt: str | None) -> np.ndarray:
        """One image as transformers' ``PilBackend.process_image`` then ``_preprocess`` make it."""
        is_pil = isinstance(image, PIL.Image.Image)
        if is_pil:
            where = f"{where} (PIL mode {image.mode!r})"
        if self.do_convert_rgb:
            array = convert_to_rgb(image, fmt, where)
        else:
            array = np.array(image) if is_pil else image
        if array.ndim == 2:
            array, fmt = array[None], FIRST
        elif is_pil:
            array, fmt = np.moveaxis(array, -1, 0), FIRST
        elif fmt is None:
            fmt = infer_channel_format(array, where)
        if fmt == LAST:
            array = np.moveaxis(array, -1, 0)
        channels, height, width = array.shape
        if channels not in CHANNELS:
            raise InputError(f"{where} has {channels} channels; expected 1, 3 or 4")
        if height == 0 or width == 0:
            raise InputError(f"{where} is empty ({height}x{width} pixels)")
        if self.do_resize:
            array = resize(array, self._resized_size(height, width, where), self.resample, where)
        if self.do_center_crop and self.crop_size is not None:  # __init__ requires crop_size then
            array = center_crop(array, self.crop_size["height"], self.crop_size["width"])
        if self.do_rescale:
            array = rescale(array, self.rescale_factor)
        if self.do_normalize:
            array = self._normalize(array, where)
        return array.astype(np.float32, copy=False)

    def _resized_size(self, height: int, width: int, where: str) -> tuple[int, int]:
        """Output (height, width) of the resize, as ``PilBackend.resize`` computes it."""
        size = self.size
        if "longest_edge" in size:
            out = size_with_aspect_ratio(height, width, size["shortest_edge"], size["longest_edge"])
        elif "shortest_edge" in size:  # transformers' get_resize_output_image_size, default_to_square=False
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
            out = (new_long, new_short) if width <= height else (new_short, new_long)
        elif "max_height" in size:
            scale = min(size["max_height"] / height, size["max_width"] / width)
            out = (int(height * scale), int(width * scale))
        else:
            out = (size["height"], size["width"])
        if min(out) < 1:
            raise InputError(
                f"{where} ({height}x{width}) would be resized to {out[0]}x{out[1]} with size={size}"
            )
        return out

    def _normalize(self, array: np.ndarray, where: str) -> np.ndarray:
        channels = array.shape[0]
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32)
        per_channel = []
        for key, value in (("image_mean", self.image_mean), ("image_std", self.image_std)):
            if isinstance(value, tuple) and len(value) != channels:
                hint = "; set do_convert_rgb to make images RGB" if not self.do_convert_rgb else ""
                raise InputError(f"{where} has {channels} channels but {key} has {len(value)} values{hint}")
            values = value if isinstance(value, tuple) else [value] * channels
            per_channel.append(np.array(values, dtype=array.dtype))
        mean, std = per_channel
        return ((array.T - mean) / std).T


# ----- config values ------------------------------------------------------------------------------
def write_preprocessor_config(directory: str | os.PathLike, config: Mapping[str, Any]) -> pathlib.Path:
    """``config`` as ``directory``'s ``preprocessor_config.json`` (directory created if needed); its path."""
    return write_text(pathlib.Path(directory) / CONFIG_NAME, json.dumps(config, indent=2) + "\n")


def read_preprocessor_config(directory: str | os.PathLike, type_keys: tuple[str, ...],
                             model_types: Mapping[str, str]) -> tuple[pathlib.Path, dict[str, Any]]:
    """``preprocessor_config.json`` of ``directory`` and its path; when it names no type (none of
    ``type_keys``), the first key is set from ``config.json``'s ``model_type`` through ``model_types``,
    as transformers' Auto classes do."""
    directory = pathlib.Path(directory)
    path = directory / CONFIG_NAME
    config = _read_json(path, f"{directory} has no {CONFIG_NAME}")
    if all(config.get(key) is None for key in type_keys):
        model_config = directory / "config.json"
        model_type = _read_json(model_config, "").get("model_type") if model_config.is_file() else None
        if model_type not in model_types:
            raise ConfigError(f"{path} names no {' (nor '.join(type_keys)}{')' * (len(type_keys) - 1)} and config.json's "
                              f"model_type {model_type!r} is not one of {', '.join(model_types)}")
        config[type_keys[0]] = model_types[model_type]
    return path, config

def _read_json(path: pathlib.Path, missing: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(missing)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _base_type(name: Any) -> str:
    if not isinstance(name, str):
        raise ConfigError(f"image_processor_type must be a string, got {name!r}")
    base = name.removesuffix("Fast") if name.endswith("Fast") else name.removesuffix("Pil")
    if base not in DEFAULTS:
        raise ConfigError(
            f"image_processor_type {name!r} is not supported: isoform implements {', '.join(DEFAULTS)} "
            "(with or without the Pil or Fast suffix)"
        )
    return base


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return bool(value)


def _is_number(value: Any) -> bool:
    numeric = isinstance(value, int | float | np.integer | np.floating)
    return numeric and not isinstance(value, bool | np.bool_)


def _number(value: Any, key: str) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _mean_std(value: Any, key: str) -> float | tuple[float, ...]:
    values = list(value) if isinstance(value, list | tuple) else [value]
    if not values or not all(_is_number(v) and math.isfinite(v) for v in values):
        raise ConfigError(f"{key} must be a finite number or a non-empty list of them, got {value!r}")
    if key == "image_std" and any(v == 0 for v in values):
        raise ConfigError(f"image_std must not contain 0, got {value!r}")
    return tuple(float(v) for v in values) if isinstance(value, list | tuple) else float(value)


def _json_values(value: float | tuple[float, ...]) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


def _size_dict(value: Any, key: str, default_to_square: bool) -> dict[str, int]:
    """transformers' ``get_size_dict``: an int is a square (or the shortest edge), a pair is (h, w)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = {"height": value, "width": value} if default_to_square else {"shortest_edge": value}
    elif isinstance(value, list | tuple) and len(value) == 2:
        size = {"height": value[0], "width": value[1]}
    elif isinstance(value, Mapping):
        size = dict(value)
    else:
        raise ConfigError(f"{key} must be a dict, an int or a [height, width] pair, got {value!r}")
    if set(size) not in _SIZE_FORMS:
        raise ConfigError(
            f"{key} must have the keys {{height, width}}, {{shortest_edge}}, {{shortest_edge, longest_edge}} "
            f"or {{max_height, max_width}}, got {value!r}"
        )
    for name, v in size.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{key}[{name!r}] must be a positive integer, got {v!r}")
    return size


def _resample(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value not in RESAMPLE_NAMES:
        filters = ", ".join(f"{name}={i}" for i, name in RESAMPLE_NAMES.items())
        raise ConfigError(f"resample must be a PIL resampling filter ({filters}), got {value!r}")
    return int(value)


def _channel_format(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if value in (FIRST, LAST):  # also transformers' ChannelDimension members, a str enum
        return FIRST if value == FIRST else LAST
    raise ConfigError(f"{key} must be {FIRST!r}, {LAST!r} or null, got {value!r}")
