"""Parity of ``isoform.FeatureExtractor`` with transformers' ``Wav2Vec2FeatureExtractor`` and
``Speech2TextFeatureExtractor`` (its NumPy filterbank path): configs x padding modes, attention
masks, ``pad_to_multiple_of``, truncation, input forms; bad inputs and configs; save / load round
trips. Expected features come from transformers here, never pasted."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import isoform
from isoform.errors import ConfigError, InputError

transformers = pytest.importorskip("transformers")

VALUES_ATOL = 1e-5  # input_values
FBANK_ATOL = 1e-4  # input_features
SR = 16000
W2V, S2T = "Wav2Vec2FeatureExtractor", "Speech2TextFeatureExtractor"

W2V_CONFIGS = [
    ("default", {}),
    ("mask", dict(return_attention_mask=True)),
    ("mask-pad-value", dict(return_attention_mask=True, padding_value=0.25)),
    ("raw", dict(do_normalize=False, padding_value=-0.5)),
]  # fmt: skip
S2T_CONFIGS = [
    ("default", {}),
    ("40-bins-pad-value", dict(num_mel_bins=40, feature_size=40, padding_value=1.5)),
    ("means-only", dict(normalize_vars=False)),
    ("vars-only", dict(normalize_means=False)),
    ("no-cmvn", dict(do_ceptral_normalize=False, padding_value=-1.0)),
]  # fmt: skip
# (case id, kwargs); lengths are in samples for Wav2Vec2, in frames for Speech2Text
W2V_CALLS = [
    ("longest", dict(padding=True)),
    ("longest-str-multiple", dict(padding="longest", pad_to_multiple_of=512)),
    ("max-length", dict(padding="max_length", max_length=4000)),
    ("max-length-short", dict(padding="max_length", max_length=2000)),  # no truncation: one row stays long
    ("max-length-truncate", dict(padding="max_length", max_length=1100, truncation=True)),
    ("truncate-multiple", dict(padding=True, max_length=1000, truncation=True, pad_to_multiple_of=300)),
    ("no-pad", dict(padding=False)),
    ("no-pad-truncate", dict(padding=False, max_length=1000, truncation=True)),
    ("mask-on", dict(padding=True, return_attention_mask=True)),
    ("mask-off", dict(padding=True, return_attention_mask=False)),
]  # fmt: skip
S2T_CALLS = [
    ("longest", dict(padding=True)),
    ("longest-multiple", dict(padding=True, pad_to_multiple_of=8)),
    ("max-length", dict(padding="max_length", max_length=25)),
    ("max-length-truncate", dict(padding="max_length", max_length=10, truncation=True)),
    ("truncate-multiple", dict(padding=True, max_length=7, truncation=True, pad_to_multiple_of=4)),
    ("no-pad", dict(padding=False)),
    ("no-pad-mask-off", dict(padding=False, return_attention_mask=False)),
]  # fmt: skip


def waves(lengths=(1234, 3210, 999), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 0.2 + 0.05 * np.sin(np.arange(n) / 7)).astype(dtype) for n in lengths]


def pair(kind, config, tmp_path):
    """transformers' extractor saved with save_pretrained and isoform's loaded from the same dir."""
    cls = getattr(transformers, kind)
    theirs = cls(**config)
    theirs.save_pretrained(tmp_path)
    return theirs, isoform.FeatureExtractor.from_directory(tmp_path)


def call(fe, audio, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fe(audio, sampling_rate=SR, **kwargs)


def assert_same(expected, got, key, atol):
    assert set(got) == set(expected)
    ref = expected[key]
    assert len(got[key]) == len(ref)
    for x, y in zip(ref, got[key]):
        x = np.asarray(x)
        assert y.dtype == np.float32 and y.shape == x.shape
        np.testing.assert_allclose(y, x, rtol=0, atol=atol)
    if "attention_mask" in expected:
        for x, y in zip(expected["attention_mask"], got["attention_mask"]):
            assert y.dtype == np.int32
            np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("config", [c for _, c in W2V_CONFIGS], ids=[i for i, _ in W2V_CONFIGS])
@pytest.mark.parametrize("kwargs", [k for _, k in W2V_CALLS], ids=[i for i, _ in W2V_CALLS])
def test_wav2vec2_matches_transformers(config, kwargs, tmp_path):
    theirs, ours = pair(W2V, config, tmp_path)
    audio = waves()
    if kwargs.get("max_length") == 2000 and ours.return_attention_mask:
        # transformers cannot normalise a ragged batch with its mask (it raises a ValueError); its rows
        # padded to the longest utterance, cut back to 2000, are what the mask-wise normalisation gives
        with pytest.raises(ValueError, match="sequence"):
            call(theirs, audio, **kwargs)
        expected = call(theirs, audio, **dict(kwargs, max_length=max(map(len, audio))))
        expected = {k: [row[: max(len(a), 2000)] for row, a in zip(v, audio)] for k, v in expected.items()}
    else:
        expected = call(theirs, audio, **kwargs)
    assert_same(expected, call(ours, audio, **kwargs), "input_values", VALUES_ATOL)
    padded = kwargs["padding"] is not False and kwargs.get("max_length") != 2000
    if padded:
        expected = call(theirs, audio, return_tensors="np", **kwargs)
        got = call(ours, audio, return_tensors="np", **kwargs)
        assert isinstance(got["input_values"], np.ndarray) and got["input_values"].ndim == 2
        assert_same(expected, got, "input_values", VALUES_ATOL)


@pytest.mark.parametrize("config", [c for _, c in S2T_CONFIGS], ids=[i for i, _ in S2T_CONFIGS])
@pytest.mark.parametrize("kwargs", [k for _, k in S2T_CALLS], ids=[i for i, _ in S2T_CALLS])
def test_speech2text_matches_transformers(config, kwargs, tmp_path):
    theirs, ours = pair(S2T, config, tmp_path)
    audio = waves()
    expected = call(theirs, audio, **kwargs)
    got = call(ours, audio, **kwargs)
    assert got["input_features"][0].shape[-1] == ours.num_mel_bins
    assert_same(expected, got, "input_features", FBANK_ATOL)
    if kwargs["padding"] is not False:
        expected = call(theirs, audio, return_tensors="np", **kwargs)
        got = call(ours, audio, return_tensors="np", **kwargs)
        assert got["input_features"].ndim == 3 and got["attention_mask"].shape == got["input_features"].shape[:2]
        assert_same(expected, got, "input_features", FBANK_ATOL)


def test_speech2text_other_sampling_rate_and_dither(tmp_path):
    """An 8 kHz config (transformers' NumPy path keeps 400/160-sample frames) and dither, which
    draws from NumPy's global generator frame after frame in both."""
    theirs, ours = pair(S2T, dict(sampling_rate=8000, dither=1.5, num_mel_bins=23), tmp_path)
    audio = waves((800, 1777))
    np.random.seed(3)
    expected = theirs(audio, sampling_rate=8000, padding=True)
    np.random.seed(3)
    assert_same(expected, ours(audio, sampling_rate=8000, padding=True), "input_features", FBANK_ATOL)


@pytest.mark.parametrize(
    "form",
    ["1d-array", "1d-list", "2d-array", "list-of-lists", "tuple-of-arrays", "float64", "int16", "torch"],
)
def test_input_forms(form, tmp_path):
    theirs, ours = pair(W2V, dict(return_attention_mask=True), tmp_path)
    audio = waves((1234, 999))
    make = {
        "1d-array": lambda: audio[0], "1d-list": lambda: audio[0].tolist(),
        "2d-array": lambda: np.stack([a[:999] for a in audio]),
        "list-of-lists": lambda: [a.tolist() for a in audio], "tuple-of-arrays": lambda: tuple(audio),
        "float64": lambda: [a.astype(np.float64) for a in audio],
        "int16": lambda: [np.round(a * 3000).astype(np.int16) for a in audio],
        "torch": lambda: [pytest.importorskip("torch").from_numpy(a) for a in audio],
    }  # fmt: skip
    # transformers does not batch a list of torch tensors: its expected values come from the arrays
    expected = call(theirs, audio if form == "torch" else make[form](), padding=True)
    got = call(ours, make[form](), padding=True)
    assert len(got["input_values"]) == len(expected["input_values"])
    assert_same(expected, got, "input_values", VALUES_ATOL)


def test_speech2text_single_utterance_and_float64(tmp_path):
    theirs, ours = pair(S2T, {}, tmp_path)
    wave = waves((2345,), seed=5, dtype=np.float64)[0]
    expected = call(theirs, wave, return_tensors="np")
    got = call(ours, wave, return_tensors="np")
    assert got["input_features"].shape == expected["input_features"].shape
    assert_same(expected, got, "input_features", FBANK_ATOL)


def test_return_tensors_pt(tmp_path):
    torch = pytest.importorskip("torch")
    for kind, key in ((W2V, "input_values"), (S2T, "input_features")):
        theirs, ours = pair(kind, dict(return_attention_mask=True), tmp_path / kind)
        expected = call(theirs, waves(), padding=True, return_tensors="pt")
        got = call(ours, waves(), padding=True, return_tensors="pt")
        for name in (key, "attention_mask"):
            assert isinstance(got[name], torch.Tensor) and got[name].dtype == expected[name].dtype
            assert got[name].shape == expected[name].shape
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=FBANK_ATOL)
        assert torch.equal(got["attention_mask"], expected["attention_mask"])


def test_left_padding_normalises_the_unpadded_part(tmp_path):
    """Deliberate difference: transformers takes the first ``length`` values of a left-padded row
    for its statistics (and overwrites real audio); isoform gives each row transformers' right-padded
    values, moved to the right end."""
    for kind, key, config in ((W2V, "input_values", dict(return_attention_mask=True)),
                              (S2T, "input_features", {})):  # fmt: skip
        right, _ = pair(kind, config, tmp_path / f"{kind}-right")
        _, left = pair(kind, dict(config, padding_side="left"), tmp_path / f"{kind}-left")
        expected = call(right, waves(), padding=True, return_tensors="np")
        got = call(left, waves(), padding=True, return_tensors="np")
        for row_e, row_g, mask_e, mask_g in zip(expected[key], got[key], expected["attention_mask"],
                                                got["attention_mask"]):  # fmt: skip
            n = int(mask_e.sum())
            np.testing.assert_array_equal(mask_g, mask_e[::-1])
            np.testing.assert_allclose(row_g[len(row_g) - n :], row_e[:n], rtol=0, atol=FBANK_ATOL)
            np.testing.assert_array_equal(row_g[: len(row_g) - n], row_e[n:])


def test_speech2text_padding_without_mask(tmp_path):
    """transformers raises a TypeError here; isoform still normalises over the unpadded frames."""
    theirs, ours = pair(S2T, {}, tmp_path)
    with pytest.raises(TypeError):
        call(theirs, waves(), padding=True, return_attention_mask=False)
    expected = call(theirs, waves(), padding=True)
    got = call(ours, waves(), padding=True, return_attention_mask=False)
    assert "attention_mask" not in got
    for x, y in zip(expected["input_features"], got["input_features"]):
        np.testing.assert_allclose(y, x, rtol=0, atol=FBANK_ATOL)


def test_round_trip(tmp_path):
    for kind, config in ((W2V, dict(return_attention_mask=True, padding_value=0.5, processor_class="Wav2Vec2Processor")),
                         (S2T, dict(num_mel_bins=40, feature_size=40, normalize_vars=False, padding_side="left"))):  # fmt: skip
        theirs, ours = pair(kind, config, tmp_path / "theirs" / kind)
        assert ours.to_dict() == dict(sorted(theirs.to_dict().items()))
        ours.save(tmp_path / "ours" / kind)
        again = transformers.AutoFeatureExtractor.from_pretrained(tmp_path / "ours" / kind)
        assert type(again) is type(theirs) and again.to_dict() == theirs.to_dict()
        assert isoform.FeatureExtractor.from_directory(tmp_path / "ours" / kind).to_dict() == ours.to_dict()
    assert "Speech2TextFeatureExtractor" in repr(ours) and "num_mel_bins=40" in repr(ours)


def test_type_from_model_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 16000}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    assert isoform.FeatureExtractor.from_directory(tmp_path).feature_extractor_type == W2V
    assert type(transformers.AutoFeatureExtractor.from_pretrained(tmp_path)).__name__ == W2V
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match=r"names no feature_extractor_type.*'bert'"):
        isoform.FeatureExtractor.from_directory(tmp_path)
    with pytest.raises(ConfigError, match=r"has no preprocessor_config\.json"):
        isoform.FeatureExtractor.from_directory(tmp_path / "missing")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (dict(feature_extractor_type="WhisperFeatureExtractor"), "'WhisperFeatureExtractor' is not supported"),
        (dict(feature_extractor_type=W2V, feature_size=2), "feature_size must be 1"),
        (dict(feature_extractor_type=S2T, feature_size=1), "feature_size must be greater than 1"),
        (dict(feature_extractor_type=W2V, sampling_rate=-1), "sampling_rate must be a positive integer"),
        (dict(feature_extractor_type=W2V, padding_side="middle"), "padding_side must be"),
        (dict(feature_extractor_type=W2V, padding_value=float("nan")), "padding_value must be a finite number"),
        (dict(feature_extractor_type=W2V, do_normalize="yes"), "do_normalize must be true or false"),
        (dict(feature_extractor_type=S2T, num_mel_bins=0), "num_mel_bins must be a positive integer"),
        (dict(feature_extractor_type=S2T, normalize_vars=1), "normalize_vars must be true or false"),
    ],
)
def test_config_errors(config, match, tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=match):
        isoform.FeatureExtractor.from_directory(tmp_path)


def test_sampling_rate(tmp_path):
    for kind in (W2V, S2T):
        theirs, ours = pair(kind, {}, tmp_path / kind)
        with pytest.raises(ValueError, match="sampling rate of"):
            theirs(waves(), sampling_rate=8000)
        with pytest.raises(InputError, match=r"sampling_rate 8000 does not match .* 16000 Hz"):
            ours(waves(), sampling_rate=8000)
        with pytest.warns(UserWarning, match="pass sampling_rate"):
            unchecked = ours(waves(), padding=True)
        assert_same(call(theirs, waves(), padding=True), unchecked, ours.input_name, FBANK_ATOL)


@pytest.mark.parametrize(
    ("audio", "kwargs", "match"),
    [
        ([], {}, "no audio: got an empty list"),
        (np.zeros((0, 5)), {}, "no audio"),
        (np.zeros((2, 3, 100)), {}, "expected 1 dimension .* or 2"),
        ([np.zeros((2, 100))], {}, r"raw_speech\[0\] has shape \(2, 100\)"),
        ([np.zeros(100), np.zeros(0)], {}, r"raw_speech\[1\] is empty"),
        ([np.ones(50), np.array([0.0, np.nan, 1.0])], {}, r"raw_speech\[1\] has 1 non-finite .* index 1"),
        (np.array([0.0, np.inf]), {}, "raw_speech has 1 non-finite"),
        (["a", "b"], {}, "expected numeric samples"),
        ([np.array([True, False])], {}, "expected numeric samples"),
        ("hello", {}, "expected an array or a list of numbers, got str"),
        (np.zeros(100), dict(padding="max_length"), "padding='max_length' needs max_length"),
        (np.zeros(100), dict(truncation=True), "truncation=True needs max_length"),
        (np.zeros(100), dict(padding="biggest"), "padding must be"),
        (np.zeros(100), dict(max_length=0, padding="max_length"), "max_length must be a positive integer"),
        (np.zeros(100), dict(pad_to_multiple_of=2.5), "pad_to_multiple_of must be a positive integer"),
        (np.zeros(100), dict(return_tensors="torch"), "return_tensors must be one of"),
        (np.zeros(100), dict(return_attention_mask="yes"), "return_attention_mask must be"),
        ([np.zeros(100), np.zeros(90)], dict(return_tensors="np"), r"lengths \[100, 90\].*padding=True"),
    ],
)
def test_input_errors(audio, kwargs, match):
    with pytest.raises(InputError, match=match):
        isoform.FeatureExtractor(W2V)(audio, sampling_rate=SR, **kwargs)


def test_speech2text_too_short():
    fe = isoform.FeatureExtractor(S2T)
    with pytest.raises(InputError, match=r"raw_speech\[1\] has 399 samples, fewer than one frame"):
        fe([np.zeros(400), np.zeros(399)], sampling_rate=SR)
