"""Parity with transformers for the raw-audio encoders (Wav2Vec2, XLSR-Wav2Vec2): every task head x
config variation (group / layer feature encoder, post-LN / stable pre-LN, even / odd positional
kernel, adapters, weighted layer sum) x backend, on a padded batch of uneven utterances; both
weight-norm checkpoint layouts; bad inputs. Expected outputs are computed by transformers here,
never pasted."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import isoform
from isoform.architectures.audio import AudioEncoder
from isoform.errors import ConfigError, InputError
from isoform.testing.coverage import check_task_coverage
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

TOL = 1e-4
TINY = dict(conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), hidden_size=24, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=37, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
            vocab_size=11, num_labels=3, classifier_proj_size=7, tdnn_dim=(8, 9, 6), tdnn_kernel=(3, 3, 1),
            tdnn_dilation=(1, 2, 1), xvector_output_dim=5)
XLSR = dict(TINY, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, num_conv_pos_embeddings=15,
            hidden_act="gelu_new", layer_norm_eps=1e-6)
TASKS = {"Model": None, "ForCTC": "ctc", "ForSequenceClassification": "audio-classification",
         "ForAudioFrameClassification": "audio-frame-classification", "ForXVector": "audio-xvector"}
LENGTHS = (403, 257, 331)  # samples of audio per row; the batch is padded to the longest

# (case id, transformers class, config)
CASES = [
    ("group", "Wav2Vec2Model", TINY),
    ("xlsr-mms-attn-adapters", "Wav2Vec2Model", dict(XLSR, adapter_attn_dim=6)),
    ("group-conv-adapter", "Wav2Vec2ForCTC", dict(TINY, add_adapter=True, output_hidden_size=12, num_adapter_layers=2)),
    ("xlsr", "Wav2Vec2ForCTC", XLSR),
    ("group", "Wav2Vec2ForSequenceClassification", TINY),
    ("xlsr-weighted", "Wav2Vec2ForSequenceClassification", dict(XLSR, use_weighted_layer_sum=True)),
    ("group-weighted", "Wav2Vec2ForAudioFrameClassification", dict(TINY, use_weighted_layer_sum=True)),
    ("xlsr-weighted", "Wav2Vec2ForXVector", dict(XLSR, use_weighted_layer_sum=True)),
]
POS_CONV = "encoder.pos_conv_embed.conv"


def task_of(cls: str) -> str | None:
    return TASKS[cls.removeprefix("Wav2Vec2")]


def make_inputs(lengths=LENGTHS, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = (np.arange(max(lengths))[None] < np.array(lengths)[:, None]).astype(np.int64)
    values = (rng.normal(size=mask.shape) * mask).astype(np.float32)  # padded with zeros, as the feature extractor
    return {"input_values": values, "attention_mask": mask}


def reference(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor) and k != "loss"}


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], model: isoform.Model | None = None) -> float:
    """Every output within TOL of ``want``; the largest difference is recorded for ``model`` (when given) first."""
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
    diffs = {k: float(np.abs(got[k] - want[k]).max()) for k in want}
    worst = max(diffs.values(), default=0.0)
    if model is not None:
        record_model(model, worst)
    for k, diff in diffs.items():
        assert diff <= TOL, (k, diff)
    return worst


_expected: dict[str, dict[str, np.ndarray]] = {}


@pytest.mark.parametrize(("cls", "config"), [pytest.param(c, cfg, id=f"{name}-{c}") for name, c, cfg in CASES])
def test_parity(hf_checkpoint, backend, cls, config):
    path, hf = hf_checkpoint(cls, **config)
    inputs = make_inputs()
    if str(path) not in _expected:
        _expected[str(path)] = reference(hf, inputs)
    model = isoform.Model.load(path, backend=backend, task=task_of(cls))
    assert_close(model(**inputs).numpy(), _expected[str(path)], model)


def test_cases_cover_every_declared_task():
    check_task_coverage(AudioEncoder, {cls for _, cls, _ in CASES})


@pytest.mark.parametrize("config", [TINY, XLSR], ids=["group-even-kernel", "xlsr-odd-kernel"])
def test_weight_norm_layouts_load_and_save_as_transformers(hf_checkpoint, tmp_path, config):
    """transformers v5 saves the positional conv's weight norm as torch's parametrization; older
    checkpoints hold weight_g / weight_v. Both load; saving writes the v5 names, which transformers reads."""
    path, hf = hf_checkpoint("Wav2Vec2ForCTC", **config)
    tensors = safetensors_torch.load_file(path / "model.safetensors")
    g, v = (f"wav2vec2.{POS_CONV}.parametrizations.weight.original{i}" for i in (0, 1))
    assert g in tensors and v in tensors and tensors[g].shape == (1, 1, config["num_conv_pos_embeddings"])
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    shutil.copy(path / "config.json", legacy / "config.json")
    tensors[f"wav2vec2.{POS_CONV}.weight_g"], tensors[f"wav2vec2.{POS_CONV}.weight_v"] = tensors.pop(g), tensors.pop(v)
    safetensors_torch.save_file(tensors, legacy / "model.safetensors", metadata={"format": "pt"})

    inputs = make_inputs()
    want = reference(hf, inputs)
    model = isoform.Model.load(legacy, task="ctc")
    assert_close(model(**inputs).numpy(), want, model)

    model.save(tmp_path / "saved")
    saved = safetensors_torch.load_file(tmp_path / "saved" / "model.safetensors")
    assert g in saved and v in saved and f"wav2vec2.{POS_CONV}.weight_g" not in saved
    import transformers

    again = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "saved").eval()
    assert_close(reference(again, inputs), want)
    reloaded = isoform.Model.load(tmp_path / "saved", task="ctc")
    assert_close(reloaded(**inputs).numpy(), want, reloaded)


def test_default_mask_is_unpadded_audio(hf_checkpoint):
    path, hf = hf_checkpoint("Wav2Vec2ForSequenceClassification", **TINY)
    values = make_inputs((331, 331))["input_values"]
    model = isoform.Model.load(path, task="audio-classification")
    assert_close(model(input_values=values).numpy(), reference(hf, {"input_values": values}), model)


def test_pretraining_checkpoint_loads_as_the_base_model(hf_checkpoint):
    path, hf = hf_checkpoint("Wav2Vec2ForPreTraining", **XLSR)
    inputs = make_inputs()
    with torch.no_grad():
        want = hf.wav2vec2(**{k: torch.from_numpy(a) for k, a in inputs.items()})
    model = isoform.Model.load(path)
    assert_close(model(**inputs).numpy(), {k: want[k].numpy() for k in ("last_hidden_state", "extract_features")}, model)


@pytest.fixture(scope="module")
def base_model(hf_checkpoint):
    path, _ = hf_checkpoint("Wav2Vec2Model", **TINY)
    return isoform.Model.load(path)


@pytest.mark.parametrize(("inputs", "pattern"), [
    (dict(input_values=np.zeros((2, 100), np.int64)), r"input_values must hold floats, got dtype int64"),
    (dict(input_values=np.array([[0.0, 1.0, np.nan] + [0.0] * 97], np.float32)), r"input_values holds nan at index \(0, 2\)"),
    (dict(input_values=np.zeros((2, 100), np.float32), attention_mask=np.ones((2, 99), np.int64)),
     r"attention_mask has shape \(2, 99\), but input_values has shape \(2, 100\): they must agree in dim 'samples'"),
    (dict(input_values=np.zeros((2, 100), np.float32), attention_mask=np.ones((3, 100), np.int64)),
     r"attention_mask has shape \(3, 100\), but input_values has shape \(2, 100\): they must agree in dim 'batch'"),
    (dict(input_values=np.zeros(100, np.float32)), r"input_values must have shape \[batch, samples\], got shape \(100,\)"),
    (dict(input_values=np.zeros((2, 100), np.float32), attention_mask=np.full((2, 100), 2)), r"attention_mask holds 2"),
    (dict(input_values=np.zeros((1, 39), np.float32)), r"input_values has 39 samples, fewer than the 40 samples one frame needs"),
    (dict(input_values=np.zeros((2, 100), np.float32), attention_mask=make_inputs((100, 30))["attention_mask"]),
     r"attention_mask row 1 marks 30 samples as audio, fewer than the 40 samples"),
    (dict(attention_mask=np.ones((2, 100), np.int64)), r"input_values is required"),
])
def test_bad_inputs_named(base_model, inputs, pattern):
    with pytest.raises(InputError, match=pattern):
        base_model(**inputs)


def test_xvector_needs_the_dilated_span(hf_checkpoint):
    path, _ = hf_checkpoint("Wav2Vec2ForXVector", **dict(XLSR, use_weighted_layer_sum=True))
    m = isoform.Model.load(path, task="audio-xvector")
    with pytest.raises(InputError, match=r"fewer than the \d+ the x-vector TDNN layers need"):
        m(input_values=np.zeros((1, 140), np.float32))  # 120 give one frame by the formula, the dilation needs 160


@pytest.mark.parametrize(("change", "pattern"), [
    (dict(conv_kernel=[10, 3]), r"conv_dim, conv_stride and conv_kernel must have one"),
    (dict(feat_extract_norm="batch"), r"feat_extract_norm"),
    (dict(num_conv_pos_embedding_groups=5), r"hidden_size \(24\) must be a multiple of num_conv_pos_embedding_groups \(5\)"),
])
def test_bad_config_named(tmp_path, change, pattern):
    config = {**TINY, "model_type": "wav2vec2", **change}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=pattern):
        isoform.Model.load(tmp_path)


def test_adapter_refused_where_transformers_refuses():
    from isoform.architectures import get

    arch = get("wav2vec2").from_config({**TINY, "model_type": "wav2vec2", "add_adapter": True})
    with pytest.raises(ConfigError, match="does not support the conv adapter"):
        arch.build("audio-classification")
