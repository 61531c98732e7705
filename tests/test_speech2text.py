"""Speech2Text vs transformers on every backend: the bare model and the LM head on padded batches of
filterbank frames (odd conv stacks, frame counts the subsampling does not divide), and `generate`
from float encoder inputs, greedy and beam search token for token. Expected outputs are computed by
transformers here, never pasted."""

from __future__ import annotations

import numpy as np
import pytest

import isoform
from isoform.errors import InputError
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")

TOL = 1e-4
S2T = dict(vocab_size=40, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
           decoder_attention_heads=4, encoder_ffn_dim=20, decoder_ffn_dim=24, conv_channels=12, input_feat_per_channel=8,
           max_source_positions=50, max_target_positions=30)
CONFIGS = {
    "s2t": S2T,
    "s2t-3-convs-unscaled": dict(S2T, num_conv_layers=3, conv_kernel_sizes=[5, 3, 3], scale_embedding=False,
                                 activation_function="gelu", input_channels=2, input_feat_per_channel=4),
}
CLASSES = {"Speech2TextModel": None, "Speech2TextForConditionalGeneration": "seq2seq-lm"}


def make_inputs(config: dict, frames: int = 23, seed: int = 0) -> dict[str, np.ndarray]:
    """Two utterances, the second padded after 15 frames; decoder ids starting at the start token."""
    rng = np.random.default_rng(seed)
    features = config["input_feat_per_channel"] * config.get("input_channels", 1)
    mask = np.ones((2, frames), np.int64)
    mask[1, 15:] = 0
    x = (rng.normal(size=(2, frames, features)) * mask[..., None]).astype(np.float32)
    dec = rng.integers(3, config["vocab_size"], (2, 5))
    dec[:, 0] = 2
    return {"input_features": x, "attention_mask": mask, "decoder_input_ids": dec}


def reference(hf, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = hf(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("name", CONFIGS)
def test_parity(hf_checkpoint, backend, name, cls):
    path, hf = hf_checkpoint(cls, **CONFIGS[name])
    inputs = make_inputs(CONFIGS[name])
    want = reference(hf, inputs)
    model = isoform.Model.load(path, backend=backend, task=CLASSES[cls])
    got = model(**inputs).numpy()
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
    record_model(model, max(float(np.abs(got[k] - want[k]).max()) for k in want))
    for k in want:
        assert float(np.abs(got[k] - want[k]).max()) <= TOL, k


OPTIONS = [dict(num_beams=1), dict(num_beams=3), dict(num_beams=3, num_return_sequences=2, length_penalty=0.6,
                                                     no_repeat_ngram_size=2)]


@pytest.mark.parametrize("name", CONFIGS)
def test_generate_matches_transformers(hf_checkpoint, backend, name):
    """Float features as the encoder input; min_new_tokens keeps eos from ending the search at once."""
    path, hf = hf_checkpoint("Speech2TextForConditionalGeneration", **CONFIGS[name])
    model = isoform.Model.load(path, backend=backend, task="seq2seq-lm")
    inputs = make_inputs(CONFIGS[name])
    for options in OPTIONS:
        opts = dict(options, max_new_tokens=7, min_new_tokens=5)
        with torch.no_grad():
            want = hf.generate(input_features=torch.from_numpy(inputs["input_features"]),
                               attention_mask=torch.from_numpy(inputs["attention_mask"]), do_sample=False, **opts).numpy()
        got = model.generate(inputs["input_features"], attention_mask=inputs["attention_mask"], **opts)
        np.testing.assert_array_equal(got, want, err_msg=str(options))
    by_name = model.generate(input_features=inputs["input_features"], attention_mask=inputs["attention_mask"],
                             max_new_tokens=4)
    np.testing.assert_array_equal(by_name, model.generate(inputs["input_features"], inputs["attention_mask"], max_new_tokens=4))


def test_bad_inputs(hf_checkpoint):
    path, _ = hf_checkpoint("Speech2TextForConditionalGeneration", **S2T)
    model = isoform.Model.load(path, task="seq2seq-lm")
    x = make_inputs(S2T)
    with pytest.raises(InputError, match=r"input_features must have shape \[batch, frames, 8\].*dim 2 must be 8"):
        model(**dict(x, input_features=x["input_features"][..., :7]))
    with pytest.raises(InputError, match=r"input_features must hold floats"):
        model(**dict(x, input_features=x["input_features"].astype(np.int64)))
    with pytest.raises(InputError, match=r"decoder_input_ids is required"):
        model(input_features=x["input_features"])
    with pytest.raises(InputError, match=r"attention_mask has shape \(2, 22\).*dim 'frames'"):
        model(**dict(x, attention_mask=x["attention_mask"][:, :22]))
    with pytest.raises(InputError, match=r"input_features must be floats of shape \[batch, frames, features\]"):
        model.generate(x["decoder_input_ids"])
    with pytest.raises(InputError, match=r"input_features holds nan"):
        model.generate(np.full((1, 9, 8), np.nan, np.float32))
    with pytest.raises(InputError, match=r"generate needs the prompt: input_features"):
        model.generate()
