"""automatic-speech-recognition: CTC models (greedy argmax, decoded by the CTC tokenizer) and speech
seq2seq models (``generate``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .base import Pipeline


class AutomaticSpeechRecognitionPipeline(Pipeline):
    """transformers' automatic-speech-recognition: per waveform (a 1-d float array at the feature
    extractor's sampling rate, or ``{"raw" or "array", "sampling_rate"}``) ``{"text"}``. A ``ctc`` model
    (config.json's class ``...ForCTC``) decodes the argmax ids with the tokenizer (repeats collapsed, pads
    dropped); others load as ``seq2seq-lm`` and generate (``generate_kwargs``, or generation options as
    keywords; transformers' defaults where neither they nor the checkpoint set them: beam search with 5
    beams, 256 new tokens), decoded skipping special tokens. No resampling, chunking or timestamps."""

    model_task = "ctc"
    preprocessor = "processor"
    generation_defaults = {"max_new_tokens": 256, "num_beams": 5}  # transformers' (after Whisper)

    @classmethod
    def model_tasks(cls) -> tuple[str | None, ...]:
        return ("ctc", "seq2seq-lm")

    @classmethod
    def task_for(cls, directory: Path) -> str | None:
        try:
            classes = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("architectures") or []
        except (OSError, ValueError):
            classes = []  # Model.load reports the config
        return "ctc" if any(str(c).endswith("ForCTC") for c in classes) else "seq2seq-lm"

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, dict) or (isinstance(inputs, np.ndarray) and inputs.ndim == 1)

    def _wave(self, item: Any) -> np.ndarray:
        rate = self.processor.feature_extractor.sampling_rate
        if isinstance(item, dict):
            wave = item.get("raw", item.get("array"))
            if wave is None or "sampling_rate" not in item:
                raise InputError('automatic-speech-recognition: a dict input needs "raw" (or "array") and "sampling_rate"')
            if item["sampling_rate"] != rate:
                raise InputError(f"automatic-speech-recognition: audio at {item['sampling_rate']} Hz, the model takes "
                                 f"{rate} Hz (isoform does not resample)")
            item = wave
        wave = np.asarray(item, dtype=np.float32)
        if wave.ndim == 2:  # channels first, as transformers' _to_mono
            wave = wave.mean(0)
        if wave.ndim != 1 or not wave.size:
            raise InputError(f"automatic-speech-recognition takes 1-d waveforms, got shape {wave.shape}")
        return wave

    def _run(self, items: list[Any], generate_kwargs: dict[str, Any] | None = None,
             **options: Any) -> list[dict[str, str]]:
        fe = self.processor.feature_extractor
        waves = [self._wave(item) for item in items]
        inputs = dict(self.processor(audio=waves, sampling_rate=fe.sampling_rate, padding=True,
                                     return_attention_mask=True, return_tensors="np"))
        if self.model.task == "ctc":
            ids = self._forward(inputs)["logits"].argmax(-1)
            return [{"text": self.processor.decode(row)} for row in ids]
        options = self._generate_options({**(generate_kwargs or {}), **options})
        out = np.asarray(self.model.generate(**inputs, **options))
        return [{"text": self.processor.decode(row, skip_special_tokens=True)} for row in out]
