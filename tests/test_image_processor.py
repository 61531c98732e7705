"""Parity of ``isoform.ImageProcessor`` with transformers' PIL-backend image processors (ViT, DeiT,
CLIP): configs (odd sizes, crops larger and smaller than the image, shortest edge, every resample
filter) x images (PIL RGB/L/RGBA/LA/P, uint8 and float arrays, HWC and CHW, non-square). Expected
pixels, and whether an input is refused at all, come from transformers here, never pasted."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import isoform
from isoform.errors import ConfigError, InputError

transformers = pytest.importorskip("transformers")

ATOL = 1e-5
NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING = range(6)

# (case id, transformers class, kwargs)
CONFIGS = [
    ("vit-30x22", "ViTImageProcessorPil", dict(size={"height": 30, "width": 22})),
    ("vit-nearest", "ViTImageProcessorPil", dict(size={"height": 17, "width": 40}, resample=NEAREST)),
    ("vit-lanczos-rgb", "ViTImageProcessorPil",
     dict(size={"height": 25, "width": 19}, resample=LANCZOS, do_convert_rgb=True)),
    ("vit-box-custom-stats", "ViTImageProcessorPil",
     dict(size={"height": 21, "width": 23}, resample=BOX, image_mean=[0.1, 0.2, 0.3],
          image_std=[0.9, 0.8, 0.7], rescale_factor=1 / 127.5)),
    ("vit-hamming-scalar-stats", "ViTImageProcessorPil",
     dict(size={"height": 20, "width": 20}, resample=HAMMING, image_mean=0.4, image_std=0.3)),
    ("vit-raw", "ViTImageProcessorPil",
     dict(size={"height": 18, "width": 27}, do_rescale=False, do_normalize=False)),
    ("vit-no-resize", "ViTImageProcessorPil", dict(do_resize=False, do_convert_rgb=True)),
    ("vit-max-height-width", "ViTImageProcessorPil", dict(size={"max_height": 25, "max_width": 19})),
    ("deit-bicubic-crop", "DeiTImageProcessorPil",
     dict(size={"height": 30, "width": 26}, crop_size={"height": 20, "width": 23})),
    ("deit-crop-pads", "DeiTImageProcessorPil",
     dict(size={"height": 15, "width": 12}, crop_size={"height": 20, "width": 17}, resample=BILINEAR)),
    ("deit-crop-only", "DeiTImageProcessorPil", dict(do_resize=False, crop_size={"height": 24, "width": 29})),
    ("clip-shortest-edge", "CLIPImageProcessorPil",
     dict(size={"shortest_edge": 24}, crop_size={"height": 20, "width": 24})),
    ("clip-nearest-no-crop", "CLIPImageProcessorPil",
     dict(size={"shortest_edge": 19}, do_center_crop=False, resample=NEAREST)),
    ("clip-lanczos", "CLIPImageProcessorPil",
     dict(size={"shortest_edge": 21}, crop_size=21, resample=LANCZOS)),
    ("clip-bilinear-no-rgb", "CLIPImageProcessorPil",
     dict(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}, resample=BILINEAR,
          do_convert_rgb=False, do_normalize=False)),
    ("clip-shortest-longest", "CLIPImageProcessorPil",
     dict(size={"shortest_edge": 20, "longest_edge": 28}, do_center_crop=False)),
]  # fmt: skip


def make_images() -> dict[str, object]:
    rng = np.random.default_rng(0)

    def u8(*shape: int) -> np.ndarray:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)

    palette = Image.fromarray(u8(20, 26)).convert("P")
    palette.info["transparency"] = 7
    return {
        "pil-rgb-37x53": Image.fromarray(u8(53, 37, 3)),
        "pil-l": Image.fromarray(u8(29, 41)),
        "pil-rgba": Image.fromarray(u8(30, 30, 4)),
        "pil-la": Image.fromarray(u8(25, 27)).convert("LA"),
        "pil-p-transparency": palette,
        "hwc-u8": u8(45, 33, 3),
        "chw-u8": u8(3, 28, 50),
        "hwc-gray-u8": u8(26, 35, 1),
        "hwc-rgba-u8": u8(27, 32, 4),
        "hwc-f32-unit": rng.random((31, 44, 3), dtype=np.float32),
        "chw-f64-unit": rng.random((3, 36, 23)),
        "hwc-f32-integral": u8(22, 39, 3).astype(np.float32),
        "hwc-f32-rgba-unit": rng.random((24, 21, 4)).astype(np.float32),
        "chw-u8-2-channels": u8(2, 20, 20),
        "hwc-f32-out-of-range": (rng.random((19, 25, 3)) * 3).astype(np.float32),
    }


IMAGES = make_images()
KEYS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
        "do_normalize", "image_mean", "image_std", "do_convert_rgb")  # fmt: skip


def build(tmp_path, cls: str, kwargs: dict) -> tuple[object, isoform.ImageProcessor]:
    """The transformers processor and isoform's loaded from what it saved."""
    hf = getattr(transformers, cls)(**kwargs)
    hf.save_pretrained(tmp_path)
    return hf, isoform.ImageProcessor.load(tmp_path)


def assert_same(hf, ours, images, return_tensors: str | None) -> None:
    """Same pixels as transformers, or an InputError where transformers refuses the input."""
    try:
        expected = hf(images, return_tensors=return_tensors)["pixel_values"]
    except Exception:  # transformers raises ValueError, TypeError, ... on inputs it cannot take
        with pytest.raises(InputError):
            ours(images, return_tensors=return_tensors)
        return
    if any(np.asarray(e).shape[0] not in (1, 3, 4) for e in expected):  # e.g. a PIL "LA" image, never RGB'd
        with pytest.raises(InputError, match="has 2 channels; expected 1, 3 or 4"):
            ours(images, return_tensors=return_tensors)
        return
    got = ours(images, return_tensors=return_tensors)["pixel_values"]
    if return_tensors is None:
        assert isinstance(got, list) and len(got) == len(expected)
    else:
        assert isinstance(got, np.ndarray) and got.ndim == 4
    for g, e in zip(got, expected):
        assert g.dtype == np.float32
        assert g.shape == e.shape
        np.testing.assert_allclose(g, np.asarray(e, dtype=np.float32), atol=ATOL, rtol=0)


@pytest.mark.parametrize("case,cls,kwargs", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_parity_per_image(tmp_path, case, cls, kwargs):
    hf, ours = build(tmp_path, cls, kwargs)
    for name, image in IMAGES.items():
        try:
            assert_same(hf, ours, image, "np")
        except AssertionError as e:
            raise AssertionError(f"{case} / {name}: {e}") from e


@pytest.mark.parametrize("case,cls,kwargs", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_parity_batch(tmp_path, case, cls, kwargs):
    hf, ours = build(tmp_path, cls, kwargs)
    accepted = []
    for image in IMAGES.values():
        try:
            pixels = hf(image)["pixel_values"][0]
        except Exception:
            continue
        if pixels.shape[0] in (1, 3, 4):  # isoform refuses 2 channels (a PIL "LA" image, never RGB'd)
            accepted.append(image)
    assert len(accepted) >= 6  # every config takes at least the RGB images
    assert_same(hf, ours, accepted, None)
    shapes = {p.shape for p in ours(accepted)["pixel_values"]}
    if len(shapes) == 1:
        assert_same(hf, ours, accepted, "np")


def test_batch_structures_match_transformers(tmp_path):
    hf, ours = build(tmp_path, "CLIPImageProcessorPil", dict(size={"shortest_edge": 18}, crop_size=16))
    a, b, c = (IMAGES[name][:20, :30] for name in ("hwc-u8", "hwc-f32-integral", "hwc-f32-unit"))
    stacked = np.stack([a, b, c])
    for images in (stacked, [stacked[:2], stacked[2:]], [[a, b], [c]], (a, b, c)):
        assert_same(hf, ours, images, "np")
    np.testing.assert_array_equal(ours(stacked, "np")["pixel_values"], ours([a, b, c], "np")["pixel_values"])
    single = ours(IMAGES["pil-rgb-37x53"], "np").pixel_values  # attribute access too
    assert single.shape == (1, 3, 16, 16)


def test_input_data_format_overrides_inference(tmp_path):
    # (3, 5, 3) is ambiguous: inferred channels-first, as transformers does; channels_last on request
    hf, ours = build(tmp_path, "ViTImageProcessorPil", dict(size={"height": 6, "width": 4}))
    image = np.random.default_rng(1).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    assert_same(hf, ours, image, "np")
    for fmt in ("channels_first", "channels_last"):
        expected = hf(image, return_tensors="np", input_data_format=fmt)["pixel_values"]
        got = ours(image, "np", input_data_format=fmt)["pixel_values"]
        np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    first = ours(image, "np", input_data_format="channels_first")["pixel_values"]
    last = ours(image, "np", input_data_format="channels_last")["pixel_values"]
    assert np.abs(first - last).max() > 0.1


@pytest.mark.parametrize("name", ["ViTImageProcessor", "DeiTImageProcessorPil", "CLIPImageProcessorFast"])
def test_defaults_are_transformers_class_defaults(name):
    base = name.removesuffix("Pil").removesuffix("Fast")
    hf = getattr(transformers, f"{base}Pil")()
    nulls = dict.fromkeys(KEYS)
    for ours in (isoform.ImageProcessor.from_dict({"image_processor_type": name}),
                 isoform.ImageProcessor.from_dict({"image_processor_type": name, **nulls})):  # fmt: skip
        assert ours.image_processor_type == base
        for key in KEYS:
            expected = getattr(hf, key)
            expected = dict(expected) if expected is not None and key in ("size", "crop_size") else expected
            expected = bool(expected) if key.startswith("do_") else expected
            assert getattr(ours, key) == expected, key
    image = IMAGES["pil-rgb-37x53"]
    expected = hf(image, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours(image, "np")["pixel_values"], expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("case,cls,kwargs", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_save_round_trip_through_transformers(tmp_path, case, cls, kwargs):
    hf, ours = build(tmp_path / "hf", cls, kwargs)
    path = ours.save(tmp_path / "ours")
    assert path.name == "preprocessor_config.json"
    back = transformers.AutoImageProcessor.from_pretrained(tmp_path / "ours", backend="pil")
    assert type(back) is type(hf)
    for key in KEYS:
        if key.startswith("do_"):
            assert bool(getattr(back, key)) == bool(getattr(hf, key)), key
        else:
            assert getattr(back, key) == getattr(hf, key), key
    images = [IMAGES["pil-rgb-37x53"], IMAGES["hwc-f32-unit"]]
    for e, g in zip(hf(images)["pixel_values"], back(images)["pixel_values"]):
        np.testing.assert_array_equal(e, g)
    assert isoform.ImageProcessor.load(tmp_path / "ours").to_dict() == ours.to_dict()


@pytest.mark.parametrize(
    "config,model_type",
    [
        ({"feature_extractor_type": "CLIPFeatureExtractor", "size": 24, "crop_size": 20, "resample": 1},
         None),
        ({"feature_extractor_type": "ViTFeatureExtractor", "size": 26, "resample": 0}, None),
        ({"image_processor_type": "DeiTImageProcessorFast", "size": [22, 31], "crop_size": [18, 20]}, None),
        ({"image_processor_type": "CLIPImageProcessor", "use_square_size": True, "crop_size": 200}, None),
        ({"size": {"height": 27, "width": 21}, "crop_size": 11, "do_center_crop": True}, "deit"),
        ({"size": 25, "default_to_square": False, "processor_class": "ViTProcessor"}, "vit"),
    ],
    ids=["clip-legacy-int-sizes", "vit-legacy-int-size", "deit-fast-lists", "clip-use-square-size",
         "deit-from-model-type", "vit-not-square-int"],
)  # fmt: skip
def test_legacy_configs(tmp_path, config, model_type):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    if model_type is not None:
        (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    hf = transformers.AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    ours = isoform.ImageProcessor.load(tmp_path)
    images = [IMAGES["pil-rgb-37x53"], IMAGES["hwc-u8"], IMAGES["chw-f64-unit"]]
    assert_same(hf, ours, images, None)
    ours.save(tmp_path / "saved")
    back = transformers.AutoImageProcessor.from_pretrained(tmp_path / "saved", backend="pil")
    for e, g in zip(hf(images)["pixel_values"], back(images)["pixel_values"]):
        np.testing.assert_array_equal(e, g)
    if "processor_class" in config:
        saved = json.loads((tmp_path / "saved" / "preprocessor_config.json").read_text())
        assert saved["processor_class"] == "ViTProcessor"


def test_return_tensors_types():
    ours = isoform.ImageProcessor("CLIPImageProcessor", size={"shortest_edge": 12}, crop_size=10)
    images = [IMAGES["pil-rgb-37x53"], IMAGES["hwc-u8"]]
    reference = ours(images, "np")["pixel_values"]
    assert isinstance(reference, np.ndarray) and reference.dtype == np.float32
    assert reference.shape == (2, 3, 10, 10)
    listed = ours(images)["pixel_values"]
    assert isinstance(listed, list) and all(p.shape == (3, 10, 10) for p in listed)
    torch = pytest.importorskip("torch")
    pt = ours(images, return_tensors="pt")["pixel_values"]
    assert isinstance(pt, torch.Tensor) and pt.dtype == torch.float32 and tuple(pt.shape) == (2, 3, 10, 10)
    np.testing.assert_array_equal(pt.numpy(), reference)
    jnp = pytest.importorskip("jax.numpy")
    jx = ours(images, return_tensors="jax")["pixel_values"]
    assert isinstance(jx, type(jnp.zeros(1))) and jx.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(jx), reference)


def test_processing_imports_no_framework():
    code = (
        "import sys, numpy as np, isoform\n"
        "p = isoform.ImageProcessor('ViTImageProcessor', size={'height': 4, 'width': 4})\n"
        "p(np.zeros((5, 6, 3), np.uint8), return_tensors='np')\n"
        "loaded = [m for m in ('torch', 'jax', 'tensorflow') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


VIT = {"image_processor_type": "ViTImageProcessor"}


@pytest.mark.parametrize(
    "config,match",
    [
        ({"image_processor_type": "BeitImageProcessor"}, "image_processor_type 'BeitImageProcessor'"),
        ({"image_processor_type": 3}, "image_processor_type must be a string"),
        ({**VIT, "size": {"foo": 3}}, "size must have the keys"),
        ({**VIT, "size": {"height": 0, "width": 3}}, r"size\['height'\]"),
        ({**VIT, "size": "big"}, "size must be"),
        ({"image_processor_type": "DeiTImageProcessor", "crop_size": {"shortest_edge": 3}}, "crop_size"),
        ({**VIT, "do_center_crop": True}, "crop_size"),
        ({**VIT, "resample": 7}, "resample"),
        ({**VIT, "resample": True}, "resample"),
        ({**VIT, "do_resize": "yes"}, "do_resize"),
        ({**VIT, "rescale_factor": "x"}, "rescale_factor"),
        ({**VIT, "image_std": [0.0, 1.0, 1.0]}, "image_std"),
        ({**VIT, "image_mean": []}, "image_mean"),
        ({**VIT, "image_mean": [0.5, 0.5]}, "image_mean has 2"),
        ({**VIT, "do_pad": True}, "do_pad"),
        ({**VIT, "input_data_format": "hwc"}, "input_data_format"),
        ({"size": 3}, "image_processor_type is missing"),
    ],
)
def test_config_errors(config, match):
    with pytest.raises(ConfigError, match=match):
        isoform.ImageProcessor.from_dict(config)


def test_directory_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"has no preprocessor_config\.json"):
        isoform.ImageProcessor.load(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"cannot read .*preprocessor_config\.json"):
        isoform.ImageProcessor.load(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text('{"size": 3}')
    with pytest.raises(ConfigError, match="names no image_processor_type"):
        isoform.ImageProcessor.load(tmp_path)
    config = {"image_processor_type": "ViTImageProcessor", "resample": 9}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"preprocessor_config\.json: resample"):
        isoform.ImageProcessor.load(tmp_path)


@pytest.mark.parametrize(
    "images,kwargs,match",
    [
        (np.zeros((5, 6), np.uint8), {}, r"shape \(5, 6\)"),
        (np.zeros((1, 2, 3, 4, 5), np.uint8), {}, r"shape \(1, 2, 3, 4, 5\)"),
        ([np.zeros((2, 5, 6, 3), np.uint8)[None]], {}, "must have 3 dimensions"),
        ([[np.zeros((2, 5, 6, 3), np.uint8)]], {}, r"images\[0\]\[0\]"),
        (np.zeros((8, 9, 2), np.uint8), {}, "no channel axis of size 1, 3 or 4"),
        (np.zeros((5, 8, 9), np.uint8), {}, "no channel axis of size 1, 3 or 4"),
        (np.zeros((8, 9, 5), np.uint8), {"input_data_format": "channels_last"}, "has 5 channels"),
        ([], {}, "empty list"),
        ([[], []], {}, "only empty lists"),
        ("cat.png", {}, "expected a PIL image or an array, got str"),
        ([np.zeros((5, 6, 3), np.uint8), 3], {}, r"images\[1\]: expected a PIL image"),
        (np.zeros((5, 6, 3), np.complex64), {}, "numeric"),
        (np.zeros((5, 6, 3), np.uint8), {"return_tensors": "mx"}, "return_tensors must be one of"),
        (np.zeros((5, 6, 3), np.uint8), {"input_data_format": "hwc"}, "input_data_format"),
        (np.full((5, 6, 3), 2.5, np.float32), {}, r"must be in \[0, 1\] to be resized"),
        (np.full((5, 6, 3), 300.0, np.float32), {}, r"must be in \[0, 255\] to be resized"),
        (np.zeros((5, 6, 4), np.uint8), {}, "4 channels but image_mean has 3 values; set do_convert_rgb"),
        (np.zeros((0, 6, 3), np.uint8), {}, "empty"),
    ],
    ids=lambda v: None if not isinstance(v, str) else v[:24],
)
def test_input_errors(images, kwargs, match):
    ours = isoform.ImageProcessor("ViTImageProcessor", size={"height": 4, "width": 4})
    with pytest.raises(InputError, match=match):
        ours(images, **kwargs)


def test_ragged_batch_needs_return_tensors_none():
    ours = isoform.ImageProcessor("ViTImageProcessor", do_resize=False)
    images = [np.zeros((5, 6, 3), np.uint8), np.zeros((7, 6, 3), np.uint8)]
    with pytest.raises(InputError, match="different shapes"):
        ours(images, return_tensors="np")
    assert [p.shape for p in ours(images)["pixel_values"]] == [(3, 5, 6), (3, 7, 6)]
    with pytest.raises(InputError, match=r"float RGBA image must be in \[0, 1\]"):
        isoform.ImageProcessor("CLIPImageProcessor")(np.full((5, 6, 4), 2.0, np.float32))
