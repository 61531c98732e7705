"""``Processor``: a checkpoint's tokenizer with its image processor or audio feature extractor, as
transformers' ``CLIPProcessor``, ``Wav2Vec2Processor`` and ``Speech2TextProcessor``.

    proc = isoform.Processor.load("./clip-ckpt")
    batch = proc(text=["a cat", "a dog"], images=image, padding=True, return_tensors="np")
    model(**batch)                                         # input_ids, attention_mask, pixel_values
    proc = isoform.Processor.load("./wav2vec2-ctc")
    logits = model(**proc(audio=waves, sampling_rate=16000, padding=True, return_tensors="np")).numpy()["logits"]
    proc.batch_decode(logits.argmax(-1))                   # CTC: repeats collapsed, pads dropped
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from isoform import hub
from isoform.errors import ConfigError, InputError
from isoform.staging import moved, staged_directory

from .audio import FeatureExtractor
from .image import CONFIG_NAME, BatchFeature, ImageProcessor

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "source.spm",
                   "sentencepiece.bpe.model", "spiece.model", "spm.model")
AUDIO_TYPES = ("Wav2Vec2FeatureExtractor", "Speech2TextFeatureExtractor")


class Processor:
    """A tokenizer and (optionally) an image processor or a feature extractor, called together."""

    def __init__(self, tokenizer: Any = None, image_processor: ImageProcessor | None = None,
                 feature_extractor: FeatureExtractor | None = None) -> None:
        if tokenizer is None and image_processor is None and feature_extractor is None:
            raise ConfigError("a Processor needs a tokenizer, an image processor or a feature extractor")
        self.tokenizer, self.image_processor, self.feature_extractor = tokenizer, image_processor, feature_extractor

    @classmethod
    def load(cls, name_or_path: str | os.PathLike, *, revision: str | None = None) -> Processor:
        """Load from a local directory, an isoform alias or a hub id (see ``isoform.hub.resolve``)."""
        return cls.from_directory(hub.resolve(name_or_path, revision=revision))

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> Processor:
        """What ``directory`` has: tokenizer files, and ``preprocessor_config.json`` (an audio
        ``feature_extractor_type`` makes a FeatureExtractor, anything else an ImageProcessor)."""
        from isoform.tokenization import Tokenizer

        directory = pathlib.Path(directory)
        tokenizer = Tokenizer.load(directory) if any((directory / f).is_file() for f in TOKENIZER_FILES) else None
        image = audio = None
        if (directory / CONFIG_NAME).is_file():
            import json

            kind = json.loads((directory / CONFIG_NAME).read_text()).get("feature_extractor_type")
            if kind in AUDIO_TYPES:
                audio = FeatureExtractor.from_directory(directory)
            else:
                image = ImageProcessor.from_directory(directory)
        if tokenizer is None and image is None and audio is None:
            raise ConfigError(f"{directory} has neither tokenizer files ({', '.join(TOKENIZER_FILES)}) nor {CONFIG_NAME}")
        return cls(tokenizer, image, audio)

    def save(self, directory: str | os.PathLike) -> list[pathlib.Path]:
        """Write every part's files into ``directory``, all or nothing (`isoform.staging`); returns the
        paths written."""
        paths = []
        with staged_directory(directory) as stage:
            for part in (self.tokenizer, self.image_processor, self.feature_extractor):
                if part is not None:
                    written = part.save(stage)
                    paths.extend(written if isinstance(written, list) else [written])
        return moved(paths, stage, directory)

    def __call__(self, text: Any = None, images: Any = None, audio: Any = None, *, return_tensors: str | None = None,
                 sampling_rate: int | None = None, **kwargs: Any) -> BatchFeature:
        """Tokenize ``text``, process ``images`` or ``audio`` and merge the results (transformers' keys).
        With audio and text (speech targets), the text's ids come back as ``labels``, as transformers'
        speech processors do. Keyword arguments go to the tokenizer (text) or the feature extractor
        (audio only)."""
        if text is None and images is None and audio is None:
            raise InputError("give text, images or audio to process")
        out: dict[str, Any] = {}
        if images is not None:
            out.update(self._part("image_processor", "images")(images, return_tensors=return_tensors))
        if audio is not None:
            options = {} if text is not None else kwargs
            out.update(self._part("feature_extractor", "audio")(audio, sampling_rate=sampling_rate,
                                                                return_tensors=return_tensors, **options))
        if text is not None:
            encoded = self._part("tokenizer", "text")(text, return_tensors=return_tensors, **kwargs)
            if audio is not None:
                out["labels"] = encoded["input_ids"]
            else:
                out.update(encoded)
        return BatchFeature(out)

    def _part(self, name: str, what: str) -> Any:
        part = getattr(self, name)
        if part is None:
            raise InputError(f"this processor has no {name.replace('_', ' ')}: it cannot take {what}")
        return part

    def decode(self, ids: Any, **kwargs: Any) -> str:
        return self._part("tokenizer", "ids to decode").decode(ids, **kwargs)

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        """The tokenizer's ``batch_decode`` (Wav2Vec2: CTC decoding of argmax ids)."""
        return self._part("tokenizer", "ids to decode").batch_decode(sequences, **kwargs)

    def __repr__(self) -> str:
        parts = [repr(p) for p in (self.tokenizer, self.image_processor, self.feature_extractor) if p is not None]
        return f"<isoform.Processor {' + '.join(parts)}>"
