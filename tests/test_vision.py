"""Parity with transformers for the image encoders (ViT, DeiT) and CLIP: every architecture x task
head x config variation x backend, on random pixels (non-square images, patch sizes that leave a
remainder, masked patches) and padded texts. Expected outputs are computed by transformers here,
never pasted."""

from __future__ import annotations

import numpy as np
import pytest

import isoform
from isoform.architectures.towers import Towers
from isoform.architectures.vision import VisionEncoder
from isoform.errors import ConfigError, InputError
from isoform.testing.coverage import check_task_coverage
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = 1e-4
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=[30, 22],
            patch_size=[6, 4], num_labels=3)
SQUARE = dict(TINY, image_size=24, patch_size=4, encoder_stride=4)  # SimMIM reconstructs a square grid
CLIP_TEXT = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                 max_position_embeddings=12, projection_dim=8, eos_token_id=49)
CLIP_VISION = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20, image_size=12,
                   patch_size=5, projection_dim=8)
CLIP = dict(text_config=CLIP_TEXT, vision_config=CLIP_VISION, projection_dim=8, num_labels=3)
TASKS = {"Model": None, "TextModel": None, "VisionModel": None, "TextModelWithProjection": "text-features",
         "VisionModelWithProjection": "image-features", "ForImageClassification": "image-classification",
         "ForImageClassificationWithTeacher": "image-classification", "ForMaskedImageModeling": "masked-image-modeling"}

# (case id, transformers class, config)
CASES = [
    ("vit", "ViTModel", TINY),
    ("vit-no-qkv-bias-relu-pooler", "ViTModel", dict(TINY, qkv_bias=False, hidden_act="gelu_new", pooler_output_size=20,
                                                     pooler_act="relu")),
    ("vit", "ViTForImageClassification", TINY),
    ("vit-1-channel", "ViTForImageClassification", dict(TINY, num_channels=1, layer_norm_eps=1e-5, num_labels=5)),
    ("vit", "ViTForMaskedImageModeling", SQUARE),
    ("vit-stride-2", "ViTForMaskedImageModeling", dict(SQUARE, encoder_stride=2)),
    ("deit", "DeiTModel", TINY),
    ("deit", "DeiTForImageClassification", TINY),
    ("deit", "DeiTForImageClassificationWithTeacher", TINY),
    ("deit", "DeiTForMaskedImageModeling", SQUARE),
    ("clip", "CLIPModel", CLIP),
    ("clip-gelu", "CLIPModel", dict(CLIP, text_config=dict(CLIP_TEXT, hidden_act="gelu"),
                                    vision_config=dict(CLIP_VISION, hidden_act="gelu", layer_norm_eps=1e-6))),
    ("clip", "CLIPForImageClassification", CLIP),
    ("clip", "CLIPTextModel", CLIP_TEXT),
    ("clip-legacy-eos", "CLIPTextModel", dict(CLIP_TEXT, eos_token_id=2)),
    ("clip", "CLIPTextModelWithProjection", CLIP_TEXT),
    ("clip", "CLIPVisionModel", CLIP_VISION),
    ("clip", "CLIPVisionModelWithProjection", CLIP_VISION),
]


def task_of(cls: str) -> str | None:
    return TASKS[cls.removeprefix("ViT").removeprefix("DeiT").removeprefix("CLIP")]


def texts(config: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """3 texts of 9 tokens: row 0 padded after its eos, row 2 with two eos, one token above every eos id
    (the legacy eos_token_id == 2 rule pools at the largest id)."""
    ids = rng.integers(3, config["vocab_size"] - 1, (3, 9))
    eos = config["vocab_size"] - 1
    ids[0, 5], ids[1, 8], ids[2, 3], ids[2, 6] = eos, eos, eos, eos
    mask = np.ones_like(ids)
    mask[0, 6:], ids[0, 6:] = 0, 1
    return {"input_ids": ids, "attention_mask": mask}


def make_inputs(config: dict, task: str | None, seed: int = 0, cls: str = "") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if "Text" in cls:
        return texts(config, rng)
    vision = config.get("vision_config", config)
    size = vision["image_size"]
    h, w = (size, size) if isinstance(size, int) else size
    inputs = {"pixel_values": rng.normal(size=(2, vision.get("num_channels", 3), h, w)).astype(np.float32)}
    if cls == "CLIPModel":
        inputs.update(texts(config["text_config"], rng))
    if task == "masked-image-modeling" and config["patch_size"] == config["encoder_stride"]:
        p = config["patch_size"]
        inputs["bool_masked_pos"] = rng.integers(0, 2, (2, (h // p) * (w // p))).astype(bool)
    return inputs


def reference(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor) and k != "loss"}


@pytest.mark.parametrize(("cls", "config"), [pytest.param(c, cfg, id=f"{name}-{c}") for name, c, cfg in CASES])
def test_parity(hf_checkpoint, backend, cls, config):
    path, hf = hf_checkpoint(cls, **config)
    task = task_of(cls)
    inputs = make_inputs(config, task, cls=cls)
    model = isoform.Model.load(path, backend=backend, task=task)
    assert_close(model(**inputs).numpy(), reference(hf, inputs), model)


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], model: isoform.Model | None = None) -> None:
    """Every output within TOL of transformers'; the largest difference is recorded for ``model`` first."""
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
    diffs = {k: float(np.abs(got[k] - want[k]).max()) for k in want}
    if model is not None:
        record_model(model, max(diffs.values(), default=0.0))
    for k in want:
        assert diffs[k] <= TOL, k


@pytest.mark.parametrize(("cls", "task"), [("CLIPTextModelWithProjection", "text-features"),
                                           ("CLIPVisionModelWithProjection", "image-features")])
def test_clip_tower_of_a_full_checkpoint(hf_checkpoint, backend, cls, task):
    """One tower with its projection out of a CLIPModel checkpoint, as ``<cls>.from_pretrained`` loads it."""
    path, _ = hf_checkpoint("CLIPModel", **CLIP)
    hf = getattr(transformers, cls).from_pretrained(path).eval()
    inputs = make_inputs(CLIP_TEXT if "Text" in cls else CLIP_VISION, task, cls=cls)
    model = isoform.Model.load(path, backend=backend, task=task)
    assert_close(model(**inputs).numpy(), reference(hf, inputs), model)


def test_cases_cover_every_declared_task():
    cases = {("clip_text_model" if "Text" in cls else "clip_vision_model", cls) if "WithProjection" in cls else cls
             for _, cls, _ in CASES}
    clip = {c for c in cases if "CLIP" in str(c)}
    check_task_coverage(VisionEncoder, cases - clip)
    check_task_coverage(Towers, clip | {("clip", "CLIPTextModelWithProjection"), ("clip", "CLIPVisionModelWithProjection")})


def test_distilled_checkpoint_saves_as_its_class(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint("DeiTForImageClassificationWithTeacher", **TINY)
    m = isoform.Model.load(path, task="image-classification")
    m.save(tmp_path)
    again = isoform.Model.load(tmp_path, task="image-classification")
    inputs = make_inputs(TINY, "image-classification")
    np.testing.assert_array_equal(again(**inputs).numpy()["logits"], m(**inputs).numpy()["logits"])
    assert "DeiTForImageClassificationWithTeacher" in (tmp_path / "config.json").read_text()


@pytest.mark.parametrize(("inputs", "pattern"), [
    (dict(pixel_values=np.zeros((1, 3, 24, 22), np.float32)), r"pixel_values must have shape \[batch, 3, 30, 22\].*dim 2 must be 30"),
    (dict(pixel_values=np.zeros((1, 3, 30, 22), np.uint8)), r"pixel_values must hold floats, got dtype uint8"),
    (dict(pixel_values=np.full((1, 3, 30, 22), np.inf, np.float32)), r"pixel_values holds inf at index \(0, 0, 0, 0\)"),
    (dict(), r"pixel_values is required"),
    (dict(pixel_values=np.zeros((1, 3, 30, 22), np.float32), bool_masked_pos=np.zeros((1, 20))), r"unexpected input"),
])
def test_bad_pixels_named(hf_checkpoint, inputs, pattern):
    path, _ = hf_checkpoint("ViTForImageClassification", **TINY)
    with pytest.raises(InputError, match=pattern):
        isoform.Model.load(path, task="image-classification")(**inputs)


def test_bool_masked_pos_checked(hf_checkpoint):
    path, _ = hf_checkpoint("ViTForMaskedImageModeling", **SQUARE)
    m = isoform.Model.load(path, task="masked-image-modeling")
    pixels = make_inputs(SQUARE, None)["pixel_values"]
    with pytest.raises(InputError, match=r"bool_masked_pos holds 2 .*values must be 0 or 1"):
        m(pixel_values=pixels, bool_masked_pos=np.full((2, 36), 2))
    with pytest.raises(InputError, match=r"bool_masked_pos must have shape \[batch, 36\]"):
        m(pixel_values=pixels, bool_masked_pos=np.zeros((2, 35), bool))
    with pytest.raises(InputError, match=r"patch_size == encoder_stride"):
        isoform.Model.load(hf_checkpoint("ViTForMaskedImageModeling", **dict(SQUARE, encoder_stride=2))[0],
                           task="masked-image-modeling")(pixel_values=pixels, bool_masked_pos=np.zeros((2, 36), bool))
    unmasked = m(pixel_values=pixels).numpy()["reconstruction"]
    np.testing.assert_array_equal(unmasked, m(pixel_values=pixels, bool_masked_pos=np.zeros((2, 36), bool)).numpy()["reconstruction"])


def test_coverage_check_can_fail():
    with pytest.raises(AssertionError, match=r"\('clip', None\)"):
        check_task_coverage(Towers, {"CLIPForImageClassification", ("clip", "CLIPTextModelWithProjection"),
                                     ("clip", "CLIPVisionModelWithProjection"), "CLIPTextModel", "CLIPVisionModel",
                                     ("clip_text_model", "CLIPTextModelWithProjection"),
                                     ("clip_vision_model", "CLIPVisionModelWithProjection")})
    with pytest.raises(AssertionError, match="name its model_type"):
        check_task_coverage(Towers, {"CLIPTextModelWithProjection"})


INTERPOLATE = dict(TINY, image_size=24, patch_size=4)
CLIP_INTERPOLATE = dict(CLIP, vision_config=dict(CLIP_VISION, image_size=20))  # a 4 x 4 grid of 5-pixel patches


@pytest.mark.parametrize(("cls", "config"), [("ViTModel", INTERPOLATE), ("DeiTForImageClassificationWithTeacher", INTERPOLATE),
                                             ("CLIPVisionModelWithProjection", CLIP_INTERPOLATE["vision_config"]),
                                             ("CLIPModel", CLIP_INTERPOLATE)])
def test_interpolate_pos_encoding(hf_checkpoint, backend, cls, config):
    """``Model.load(..., interpolate_pos_encoding=True)``: any image size, positions resized bicubically
    as transformers' ``forward(interpolate_pos_encoding=True)`` (larger, smaller, non-square, native)."""
    path, hf = hf_checkpoint(cls, **config)
    model = isoform.Model.load(path, backend=backend, task=task_of(cls), interpolate_pos_encoding=True)
    extra = texts(CLIP_TEXT, np.random.default_rng(0)) if cls == "CLIPModel" else {}
    for h, w in [(24, 24), (36, 28), (18, 41)]:
        inputs = {"pixel_values": np.random.default_rng(h).normal(size=(2, 3, h, w)).astype(np.float32), **extra}
        with torch.no_grad():
            out = hf(**{k: torch.from_numpy(v) for k, v in inputs.items()}, interpolate_pos_encoding=True)
        assert_close(model(**inputs).numpy(), {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}, model)


def test_load_overrides_are_checked(hf_checkpoint):
    path, _ = hf_checkpoint("ViTForMaskedImageModeling", **SQUARE)
    with pytest.raises(ConfigError, match=r"\['interpolate_pos_encodings'\].*does not read"):
        isoform.Model.load(path, interpolate_pos_encodings=True)
    with pytest.raises(ConfigError, match="interpolate_pos_encoding with masked-image-modeling"):
        isoform.Model.load(path, task="masked-image-modeling", interpolate_pos_encoding=True)
    path, _ = hf_checkpoint("ViTModel", **dict(TINY, image_size=[30, 24]))  # a 5 x 6 grid
    with pytest.raises(ConfigError, match=r"interpolate_pos_encoding needs a square patch grid.*\(5, 6\)"):
        isoform.Model.load(path, interpolate_pos_encoding=True)
