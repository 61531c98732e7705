"""`isoform.Processor` vs transformers' CLIPProcessor and Wav2Vec2Processor: one directory with the
tokenizer and the preprocessor config, called on text + images / audio (+ text labels), and CTC
batch_decode of argmax logits. Expected values are transformers', computed here."""

from __future__ import annotations

import numpy as np
import pytest
from conftest_tokenization import build_clip, build_wav2vec2

import isoform
from isoform.errors import ConfigError, InputError

transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")
from PIL import Image  # noqa: E402


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip-processor")
    build_clip(path)
    transformers.CLIPImageProcessorPil(size={"shortest_edge": 20}, crop_size={"height": 16, "width": 16}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("wav2vec2-processor")
    build_wav2vec2(path)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(path)  # as wav2vec2-base-960h
    return path


def test_clip_text_and_images(clip_dir):
    ref = transformers.CLIPProcessor(image_processor=transformers.CLIPImageProcessorPil.from_pretrained(clip_dir),
                                     tokenizer=transformers.CLIPTokenizer.from_pretrained(clip_dir))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)) for _ in range(2)]
    texts = ["a photo of a cat", "two dogs playing in the snow"]
    ours = isoform.Processor.load(clip_dir)(text=texts, images=images, padding=True, return_tensors="np")
    want = ref(text=texts, images=images, padding=True, return_tensors="np")
    assert sorted(ours) == sorted(want) == ["attention_mask", "input_ids", "pixel_values"]
    np.testing.assert_array_equal(ours["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(ours["attention_mask"], want["attention_mask"])
    np.testing.assert_allclose(ours["pixel_values"], want["pixel_values"], atol=1e-5)


def test_wav2vec2_audio_labels_and_ctc_decode(wav2vec2_dir):
    ref = transformers.Wav2Vec2Processor.from_pretrained(wav2vec2_dir)
    proc = isoform.Processor.load(wav2vec2_dir)
    rng = np.random.default_rng(1)
    waves = [rng.normal(size=n).astype(np.float32) for n in (1234, 999)]
    for masks in (None, True):
        ours = proc(audio=waves, sampling_rate=16000, padding=True, return_tensors="np", return_attention_mask=masks)
        want = ref(audio=waves, sampling_rate=16000, padding=True, return_tensors="np", return_attention_mask=masks)
        assert sorted(ours) == sorted(want) == sorted(["input_values", *(["attention_mask"] if masks else [])])
    np.testing.assert_allclose(ours["input_values"], want["input_values"], atol=1e-5)
    np.testing.assert_array_equal(ours["attention_mask"], want["attention_mask"])  # normalised over each row's own length
    labelled = proc(audio=waves[0], text="HELLO WORLD", sampling_rate=16000)
    np.testing.assert_array_equal(labelled["labels"], ref(audio=waves[0], text="HELLO WORLD", sampling_rate=16000)["labels"])
    ids = rng.normal(size=(3, 40, len(ref.tokenizer))).argmax(-1)
    ids[:, ::3] = ref.tokenizer.pad_token_id
    assert proc.batch_decode(ids) == ref.batch_decode(ids)
    assert proc.batch_decode(ids, group_tokens=False) == ref.batch_decode(ids, group_tokens=False)


def test_errors(clip_dir, wav2vec2_dir, tmp_path):
    with pytest.raises(InputError, match="no feature extractor: it cannot take audio"):
        isoform.Processor.load(clip_dir)(audio=np.zeros(100))
    with pytest.raises(InputError, match="no image processor: it cannot take images"):
        isoform.Processor.load(wav2vec2_dir)(images=np.zeros((3, 8, 8)))
    with pytest.raises(InputError, match="give text, images or audio"):
        isoform.Processor.load(clip_dir)()
    with pytest.raises(ConfigError, match="neither tokenizer files"):
        isoform.Processor.load(tmp_path)


def test_save_round_trip(clip_dir, tmp_path):
    isoform.Processor.load(clip_dir).save(tmp_path)
    again = transformers.CLIPProcessor(image_processor=transformers.CLIPImageProcessorPil.from_pretrained(tmp_path),
                                       tokenizer=transformers.CLIPTokenizer.from_pretrained(tmp_path))
    image = Image.fromarray(np.full((20, 20, 3), 7, np.uint8))
    ours = isoform.Processor.load(tmp_path)(text="a cat", images=image, return_tensors="np")
    want = again(text="a cat", images=image, return_tensors="np")
    np.testing.assert_array_equal(ours["input_ids"], want["input_ids"])
    np.testing.assert_allclose(ours["pixel_values"], want["pixel_values"], atol=1e-5)
