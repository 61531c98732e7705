"""``FeatureExtractor``: the preprocessing of transformers' audio feature extractors
``Wav2Vec2FeatureExtractor`` (raw waveforms) and ``Speech2TextFeatureExtractor`` (Kaldi log-mel
filterbanks), in NumPy.

    fe = isoform.FeatureExtractor.load("wav2vec2-base")   # alias, hub id or directory
    batch = fe([wave_a, wave_b], sampling_rate=16000, padding=True, return_tensors="np")
    batch["input_values"]                                 # float32 [batch, samples]

Wav2Vec2: each utterance is padded with ``padding_value`` (truncated first if asked), then, with
``do_normalize``, made zero-mean unit-variance in float32 as transformers does: over the unpadded
samples when an attention mask is returned and the batch is padded (padding is then reset to
``padding_value``), over the whole padded row otherwise.

Speech2Text: the waveform, scaled by 2**15, goes through transformers' NumPy ``spectrogram`` path
(the Kaldi ``fbank`` of torchaudio: 400-sample povey frames every 160 samples, DC offset removed,
pre-emphasis 0.97, 512-point power spectrum, ``num_mel_bins`` Kaldi mel filters from 20 Hz to
Nyquist, natural log floored at float32 epsilon), then utterance CMVN over the unpadded frames.

Deliberate differences from transformers: with ``padding_side="left"`` the normalisation statistics
are taken over the unpadded part wherever it lies (transformers takes the first ``length`` values,
padding included, and overwrites real audio with ``padding_value``); Speech2Text accepts
``padding=True`` with ``return_attention_mask=False`` (transformers raises a ``TypeError``);
integer audio is made float32 first (transformers keeps it integral or normalises it in float64).
"""

from __future__ import annotations

import math
import os
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from isoform import hub
from isoform.errors import ConfigError, InputError

from .image import (
    TENSOR_TYPES,
    BatchFeature,
    _bool,
    _is_number,
    read_preprocessor_config,
    write_preprocessor_config,
)
from .image_ops import to_tensor

__all__ = ["DEFAULTS", "FeatureExtractor"]

WAV2VEC2, SPEECH2TEXT = "Wav2Vec2FeatureExtractor", "Speech2TextFeatureExtractor"
_COMMON: dict[str, Any] = {"sampling_rate": 16000, "padding_value": 0.0, "padding_side": "right"}
#: transformers' ``__init__`` defaults per type: a missing or null key takes these.
DEFAULTS: dict[str, dict[str, Any]] = {
    WAV2VEC2: {**_COMMON, "feature_size": 1, "return_attention_mask": False, "do_normalize": True},
    SPEECH2TEXT: {
        **_COMMON, "feature_size": 80, "return_attention_mask": True, "num_mel_bins": 80, "dither": 0.0,
        "do_ceptral_normalize": True, "normalize_means": True, "normalize_vars": True,
    },
}  # fmt: skip
_MODEL_TYPES = {  # config.json model_type -> type, as transformers' FEATURE_EXTRACTOR_MAPPING_NAMES
    **dict.fromkeys(
        ("data2vec-audio", "hubert", "moonshine", "sew", "sew-d", "unispeech", "unispeech-sat", "wav2vec2",
         "wav2vec2-bert", "wav2vec2-conformer", "wavlm"), WAV2VEC2),
    "speech_to_text": SPEECH2TEXT,
}  # fmt: skip
_PADDING = {True: "longest", False: "do_not_pad", "longest": "longest", "max_length": "max_length",
            "do_not_pad": "do_not_pad"}  # fmt: skip

# Kaldi fbank framing at 16 kHz as transformers' NumPy path fixes it (25 ms / 10 ms, 512-point FFT)
FRAME_LENGTH, HOP_LENGTH, FFT_LENGTH = 400, 160, 512
PREEMPHASIS, MEL_FLOOR, MIN_FREQUENCY = 0.97, 1.192092955078125e-07, 20.0


class FeatureExtractor:
    """Turn raw mono audio into ``input_values`` (Wav2Vec2) or ``input_features`` (Speech2Text).

    ``FeatureExtractor("Speech2TextFeatureExtractor", num_mel_bins=40)`` takes the keys of a
    ``preprocessor_config.json``; a missing or null key takes the type's transformers default
    (:data:`DEFAULTS`). Bad values raise :class:`~isoform.errors.ConfigError` naming the key; keys
    isoform does not use are kept in ``extra`` and written back by :meth:`save`.
    """

    def __init__(self, feature_extractor_type: str = WAV2VEC2, **settings: Any) -> None:
        if feature_extractor_type not in DEFAULTS:
            raise ConfigError(
                f"feature_extractor_type {feature_extractor_type!r} is not supported: isoform implements "
                f"{', '.join(DEFAULTS)}"
            )
        kind = feature_extractor_type
        defaults = DEFAULTS[kind]
        self.extra: dict[str, Any] = {k: v for k, v in settings.items() if k not in defaults}

        def get(key: str) -> Any:
            value = settings.get(key)
            return defaults[key] if value is None else value

        self.feature_extractor_type = kind
        self.feature_size: int = _positive_int(get("feature_size"), "feature_size")
        if kind == WAV2VEC2 and self.feature_size != 1:
            raise ConfigError(f"feature_size must be 1 for {WAV2VEC2} (mono samples), got {self.feature_size}")
        if kind == SPEECH2TEXT and self.feature_size == 1:
            raise ConfigError(f"feature_size must be greater than 1 for {SPEECH2TEXT} (frames of mel bins)")
        self.sampling_rate: int = _positive_int(get("sampling_rate"), "sampling_rate")
        self.padding_value: float = _finite(get("padding_value"), "padding_value")
        self.padding_side: str = get("padding_side")
        if self.padding_side not in ("right", "left"):
            raise ConfigError(f"padding_side must be 'right' or 'left', got {self.padding_side!r}")
        self.return_attention_mask: bool = _bool(get("return_attention_mask"), "return_attention_mask")
        if kind == WAV2VEC2:
            self.do_normalize: bool = _bool(get("do_normalize"), "do_normalize")
            return
        self.return_attention_mask = True  # transformers' Speech2Text sets it whatever the config says
        self.num_mel_bins: int = _positive_int(get("num_mel_bins"), "num_mel_bins")
        self.dither: float = _finite(get("dither"), "dither")
        for key in ("do_ceptral_normalize", "normalize_means", "normalize_vars"):
            setattr(self, key, _bool(get(key), key))
        self._mel_filters = kaldi_mel_filters(self.num_mel_bins, self.sampling_rate)
        self._window = np.hanning(FRAME_LENGTH) ** 0.85  # povey, symmetric

    @property
    def input_name(self) -> str:
        """The key of the features in a batch: ``input_values`` or ``input_features``."""
        return "input_values" if self.feature_extractor_type == WAV2VEC2 else "input_features"

    # ----- loading and saving ---------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | os.PathLike, *, revision: str | None = None) -> FeatureExtractor:
        """Load from a local directory, an isoform alias or a hub id (see ``isoform.hub.resolve``)."""
        return cls.from_directory(hub.resolve(name_or_path, revision=revision))

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> FeatureExtractor:
        """Read ``preprocessor_config.json`` in ``directory``; without ``feature_extractor_type`` the
        type comes, as in transformers' ``AutoFeatureExtractor``, from ``config.json``'s ``model_type``."""
        path, config = read_preprocessor_config(directory, ("feature_extractor_type",), _MODEL_TYPES)
        try:
            return cls.from_dict(config)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> FeatureExtractor:
        """Build from the contents of a ``preprocessor_config.json``."""
        config = dict(config)
        kind = config.pop("feature_extractor_type", None)
        if not isinstance(kind, str):
            raise ConfigError(f"feature_extractor_type must name a feature extractor, got {kind!r}")
        return cls(kind, **config)

    def to_dict(self) -> dict[str, Any]:
        """The settings as ``preprocessor_config.json`` keys (unused keys from ``extra`` included)."""
        config = dict(self.extra)
        config.update({key: getattr(self, key) for key in DEFAULTS[self.feature_extractor_type]})
        config["feature_extractor_type"] = self.feature_extractor_type
        return dict(sorted(config.items()))

    def save(self, directory: str | os.PathLike) -> pathlib.Path:
        """Write ``preprocessor_config.json`` (loadable by transformers' ``AutoFeatureExtractor``) to
        ``directory``, created if needed; returns the file's path."""
        return write_preprocessor_config(directory, self.to_dict())

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.to_dict().items() if k != "feature_extractor_type" and k not in self.extra}
        settings = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"FeatureExtractor({self.feature_extractor_type!r}, {settings})"

    # ----- processing -----------------------------------------------------------------------------
    def __call__(
        self,
        raw_speech: Any,
        padding: bool | str = False,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        sampling_rate: int | None = None,
    ) -> BatchFeature:
        """Featurize one utterance or a batch, as transformers' ``__call__`` with the same arguments.

        ``raw_speech``: a 1-D array or list of numbers (one utterance), a 2-D array (a batch), or a
        list of 1-D arrays / lists. ``padding``: ``True`` / ``"longest"``, ``"max_length"`` (to
        ``max_length``) or ``False`` / ``"do_not_pad"``; ``truncation`` cuts to ``max_length``;
        both round up to ``pad_to_multiple_of``. Lengths count samples (Wav2Vec2) or frames
        (Speech2Text). ``return_tensors``: ``"np"``, ``"pt"``, ``"jax"`` or ``"tf"`` for stacked
        tensors, ``None`` for lists of per-utterance float32 / int32 arrays.
        """
        strategy, multiple = self._check_call(padding, max_length, truncation, pad_to_multiple_of, return_tensors)
        if return_attention_mask is not None and not isinstance(return_attention_mask, bool | np.bool_):
            raise InputError(f"return_attention_mask must be True, False or None, got {return_attention_mask!r}")
        mask_wanted = self.return_attention_mask if return_attention_mask is None else bool(return_attention_mask)
        self._check_sampling_rate(sampling_rate)
        waves = _utterances(raw_speech, FRAME_LENGTH if self.feature_extractor_type == SPEECH2TEXT else 1)
        features = waves if self.feature_extractor_type == WAV2VEC2 else [self._fbank(w) for w in waves]

        if truncation:
            limit = _round_up(max_length, multiple)  # type: ignore[arg-type]  # _check_call requires it
            features = [f[:limit] for f in features]
        lengths = [len(f) for f in features]
        target = {"longest": max(lengths), "max_length": max_length, "do_not_pad": None}[strategy]
        target = None if target is None else _round_up(target, multiple)
        starts, masks = [], []
        for i, (f, n) in enumerate(zip(features, lengths)):
            extra = 0 if target is None else max(target - n, 0)
            before, after = (extra, 0) if self.padding_side == "left" else (0, extra)
            starts.append(before)
            if extra:
                spec = ((before, after), (0, 0)) if f.ndim == 2 else (before, after)
                features[i] = np.pad(f, spec, "constant", constant_values=self.padding_value)
            masks.append(np.pad(np.ones(n, dtype=np.int32), (before, after)))
        # transformers stacks equal-shaped features into one C-ordered array before normalising them
        stacked = len({f.shape for f in features}) == 1
        features = [np.ascontiguousarray(f) if stacked else f for f in features]

        padded = strategy != "do_not_pad"
        if self.feature_extractor_type == WAV2VEC2:
            if self.do_normalize:
                # transformers uses the unpadded part only when it returns the mask of a padded batch
                use = padded and mask_wanted
                features = [self._normalize(f, s if use else 0, n if use else len(f))
                            for f, s, n in zip(features, starts, lengths)]  # fmt: skip
        elif self.do_ceptral_normalize:
            features = [self._cmvn(f, s if padded else 0, n if padded else len(f))
                        for f, s, n in zip(features, starts, lengths)]  # fmt: skip
        outputs = {self.input_name: features}
        if mask_wanted:
            outputs["attention_mask"] = masks
        if return_tensors is None:
            return BatchFeature(outputs)
        shapes = sorted({f.shape for f in features})
        if len(shapes) > 1:
            raise InputError(
                f"cannot stack utterances of lengths {lengths} into one tensor: pass padding=True (or "
                "'max_length' with truncation), or return_tensors=None for lists"
            )
        return BatchFeature({k: to_tensor(np.stack(v), return_tensors) for k, v in outputs.items()})

    def _check_call(
        self, padding: Any, max_length: Any, truncation: Any, multiple: Any, return_tensors: Any
    ) -> tuple[str, int | None]:
        if return_tensors is not None and return_tensors not in TENSOR_TYPES:
            raise InputError(
                f"return_tensors must be one of {', '.join(TENSOR_TYPES)} or None, got {return_tensors!r}"
            )
        key = padding if isinstance(padding, bool | np.bool_) else getattr(padding, "value", padding)
        if not isinstance(key, bool | np.bool_ | str) or key not in _PADDING:
            raise InputError(
                f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}"
            )
        for name, value in (("max_length", max_length), ("pad_to_multiple_of", multiple)):
            if value is not None and not (_is_int(value) and value > 0):
                raise InputError(f"{name} must be a positive integer or None, got {value!r}")
        if not isinstance(truncation, bool | np.bool_):
            raise InputError(f"truncation must be True or False, got {truncation!r}")
        strategy = _PADDING[bool(key) if isinstance(key, bool | np.bool_) else key]
        if max_length is None and (truncation or strategy == "max_length"):
            why = "truncation=True" if truncation else "padding='max_length'"
            raise InputError(f"{why} needs max_length")
        return strategy, None if multiple is None else int(multiple)

    def _check_sampling_rate(self, sampling_rate: Any) -> None:
        if sampling_rate is None:
            warnings.warn(
                f"pass sampling_rate to FeatureExtractor(): this {self.feature_extractor_type} expects audio "
                f"sampled at {self.sampling_rate} Hz and cannot check it otherwise",
                UserWarning,
                stacklevel=3,
            )
        elif not _is_number(sampling_rate) or sampling_rate != self.sampling_rate:
            raise InputError(
                f"sampling_rate {sampling_rate!r} does not match the feature extractor's {self.sampling_rate} Hz: "
                f"resample the audio to {self.sampling_rate} Hz"
            )

    def _normalize(self, x: np.ndarray, start: int, length: int) -> np.ndarray:
        """transformers' ``zero_mean_unit_var_norm`` in float32, statistics over ``x[start:start+length]``."""
        part = x[start : start + length]
        normed = (x - part.mean()) / np.sqrt(part.var() + 1e-7)
        normed[:start] = self.padding_value
        normed[start + length :] = self.padding_value
        return normed

    def _cmvn(self, x: np.ndarray, start: int, length: int) -> np.ndarray:
        """transformers' ``utterance_cmvn`` over the frames ``x[start:start+length]``; constant
        features (silence, a single frame) divide by a zero deviation and give NaN, as there."""
        stop = start + length
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.normalize_means:
                x = np.subtract(x, x[start:stop].mean(axis=0))
            if self.normalize_vars:
                x = np.divide(x, x[start:stop].std(axis=0))
        if length < x.shape[0]:
            x[:start] = self.padding_value
            x[stop:] = self.padding_value
        return x.astype(np.float32)

    def _fbank(self, wave: np.ndarray) -> np.ndarray:
        """Kaldi log-mel filterbank ``[frames, num_mel_bins]`` as transformers' NumPy ``spectrogram``."""
        samples = (wave * (2**15)).astype(np.float64)  # Kaldi works on 16-bit sample values
        count = 1 + (len(samples) - FRAME_LENGTH) // HOP_LENGTH
        frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME_LENGTH)[::HOP_LENGTH][:count].copy()
        if self.dither != 0.0:  # the global NumPy generator, frame after frame, as transformers
            frames += self.dither * np.random.randn(count, FRAME_LENGTH)
        frames -= frames.mean(axis=1, keepdims=True)
        frames[:, 1:] -= PREEMPHASIS * frames[:, :-1]
        frames[:, 0] *= 1 - PREEMPHASIS
        frames *= self._window
        spectrum = np.fft.rfft(frames, n=FFT_LENGTH, axis=1).astype(np.complex64)  # transformers stores complex64
        power = np.abs(spectrum, dtype=np.float64) ** 2.0
        mel = np.maximum(MEL_FLOOR, np.dot(self._mel_filters.T, power.T))
        return np.asarray(np.log(mel), np.float32).T


def kaldi_mel_filters(num_mel_bins: int, sampling_rate: int) -> np.ndarray:
    """transformers' ``mel_filter_bank(257, num_mel_bins, 20, sampling_rate // 2, sampling_rate,
    mel_scale="kaldi", triangularize_in_mel_space=True)``: ``[257, num_mel_bins]`` float64."""
    bins = FFT_LENGTH // 2 + 1
    max_frequency = sampling_rate // 2
    if max_frequency < MIN_FREQUENCY:
        raise ConfigError(f"sampling_rate {sampling_rate} puts Nyquist below the filterbank's {MIN_FREQUENCY} Hz")

    def mel(hertz: Any) -> Any:
        return 1127.0 * np.log(1.0 + hertz / 700.0)

    centers = np.linspace(mel(MIN_FREQUENCY), mel(max_frequency), num_mel_bins + 2)
    fft_mels = mel(sampling_rate / ((bins - 1) * 2) * np.arange(bins))
    diff = np.diff(centers)
    slopes = np.expand_dims(centers, 0) - np.expand_dims(fft_mels, 1)
    down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]
    return np.maximum(np.zeros(1), np.minimum(down, up))


def _utterances(raw: Any, min_length: int) -> list[np.ndarray]:
    """The utterances of a call as float32 1-D arrays, checked."""
    if isinstance(raw, list | tuple):
        if not raw:
            raise InputError("no audio: got an empty list")
        first = raw[0]
        batched = isinstance(first, list | tuple) or (hasattr(first, "__array__") and np.ndim(first) > 0)
        items = [(f"raw_speech[{i}]", x) for i, x in enumerate(raw)] if batched else [("raw_speech", raw)]
    else:
        array = _as_array(raw, "raw_speech")
        if array.ndim not in (1, 2):
            raise InputError(
                f"raw_speech has shape {array.shape}: expected 1 dimension (one mono utterance) or 2 (a batch)"
            )
        items = [(f"raw_speech[{i}]", x) for i, x in enumerate(array)] if array.ndim == 2 else [("raw_speech", array)]
        if not items:
            raise InputError(f"no audio: raw_speech has shape {array.shape}")
    waves = []
    for where, item in items:
        array = _as_array(item, where)
        if array.ndim != 1:
            raise InputError(f"{where} has shape {array.shape}: an utterance must be 1-D mono samples")
        if len(array) < min_length:
            need = "is empty" if min_length == 1 else f"has {len(array)} samples, fewer than one frame"
            raise InputError(f"{where} {need} (at least {min_length} samples needed)")
        wave = array.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(wave))
        if bad.size:
            raise InputError(
                f"{where} has {bad.size} non-finite sample(s) (first at index {bad[0]}: {array[bad[0]]!r}, "
                "or out of float32 range)"
            )
        waves.append(wave)
    return waves


def _as_array(x: Any, where: str) -> np.ndarray:
    if not isinstance(x, list | tuple) and not hasattr(x, "__array__"):
        raise InputError(f"{where}: expected an array or a list of numbers, got {type(x).__name__}")
    try:
        array = np.asarray(x)
    except Exception as e:
        raise InputError(f"{where}: cannot read {type(x).__name__} as an array: {e}") from e
    if array.dtype.kind not in "iuf":
        raise InputError(f"{where}: expected numeric samples (integers or floats), got dtype {array.dtype}")
    return array


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _positive_int(value: Any, key: str) -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return int(value)


def _finite(value: Any, key: str) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _round_up(length: int, multiple: int | None) -> int:
    return length if multiple is None or length % multiple == 0 else (length // multiple + 1) * multiple
