"""T5 and BART generation graphs exported to ONNX (encoder + decoder step) and run with plain
onnxruntime sessions: a greedy loop over the two files gives transformers' greedy `generate` tokens."""

from __future__ import annotations

import numpy as np
import pytest
from test_seq2seq import BART, T5, hf_class, make_inputs

import isoform
from isoform.errors import ConfigError
from isoform.generation.seq2seq import export_onnx

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

NEW = 7
# transformers sizes generate's DynamicCache by the *encoder* layer count: decoders here have fewer layers
T5_GEN = dict(T5, num_layers=3, num_decoder_layers=2)
BART_GEN = dict(BART, encoder_layers=3, decoder_layers=2, forced_eos_token_id=None)


def onnx_greedy(paths, start: int, eos: int, pad: int, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Greedy decoding over the exported files, finished rows padded as transformers does."""
    encoder, step = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in paths)
    cross = dict(zip([o.name for o in encoder.get_outputs()], encoder.run(None, {"input_ids": ids, "attention_mask": mask})))
    batch, cache = ids.shape[0], NEW + 1
    past = {i.name: np.zeros((batch, i.shape[1], cache, i.shape[3]), np.float32) for i in step.get_inputs()
            if i.name.startswith("past.")}
    out, done = [np.full(batch, start)], np.zeros(batch, bool)
    for t in range(NEW):
        feeds = {"input_ids": out[-1].reshape(-1, 1).astype(np.int64), "cache_position": np.asarray(t, np.int64),
                 "attention_mask": np.ones((batch, cache), np.int64), "encoder_attention_mask": mask, **cross, **past}
        results = dict(zip([o.name for o in step.get_outputs()], step.run(None, feeds)))
        past = {"past." + k.removeprefix("present."): v for k, v in results.items() if k.startswith("present.")}
        token = np.where(done, pad, results["logits"].argmax(-1))
        done |= token == eos
        out.append(token)
        if done.all():
            break
    return np.stack(out, axis=1)


@pytest.mark.parametrize(("cls", "config"), [("T5", T5_GEN), ("Bart", BART_GEN)])
def test_exported_greedy_matches_transformers(hf_checkpoint, tmp_path, cls, config):
    path, hf = hf_checkpoint(hf_class(cls, "seq2seq-lm"), **config)
    model = isoform.Model.load(path, task="seq2seq-lm")
    paths = export_onnx(model, tmp_path)
    assert [p.name for p in paths] == ["encoder.onnx", "decoder_step.onnx"]
    inputs = make_inputs(config)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        want = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=NEW,
                           do_sample=False, num_beams=1).numpy()
    eos, pad = config.get("eos_token_id", 1), config.get("pad_token_id", 0)
    got = onnx_greedy(paths, model.arch.decoder_start_token_id, eos, pad, ids, mask)
    np.testing.assert_array_equal(got, want)


def test_export_needs_seq2seq_lm(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint(hf_class("T5", None), **T5)
    with pytest.raises(ConfigError, match="seq2seq-lm"):
        export_onnx(isoform.Model.load(path), tmp_path)
