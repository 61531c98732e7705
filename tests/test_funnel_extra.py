"""Funnel Transformer beyond the parity cases of test_bert_family.py: every sequence length
transformers runs (and InputError where it cannot), task-less loads of FunnelBaseModel checkpoints,
saving back to transformers, and config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import isoform
from isoform.architectures import get
from isoform.errors import ConfigError, InputError
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")
from test_bert_family import FUNNEL, TOL, config_for, make_inputs, max_diff, reference  # noqa: E402

VARIANTS = {
    "default": {},
    "4-blocks": dict(block_sizes=[1, 1, 1, 1]),
    "no-truncate": dict(truncate_seq=False),
    "no-separate-cls": dict(separate_cls=False),
    "factorized": dict(attention_type="factorized"),
    "factorized-no-separate-cls": dict(attention_type="factorized", separate_cls=False),
}


def _run_reference(hf, inputs):
    try:
        return reference(hf, inputs)
    except (RuntimeError, IndexError):  # short sequences: transformers' relative positions leave its table
        return None


@pytest.mark.parametrize("cls", ["FunnelModel", "FunnelBaseModel"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_length_transformers_runs(hf_checkpoint, variant, cls):
    """Sequence lengths 1..18 on the NumPy reference: transformers' outputs wherever it runs, and an
    InputError naming the length where it raises. Factorized attention with ``separate_cls`` is the
    exception: transformers also runs the lengths that reach a block as <cls> plus one token (it skips
    that pooling), which isoform's graph cannot, so it refuses them."""
    config = dict(FUNNEL, **VARIANTS[variant])
    path, hf = hf_checkpoint(cls, **config)
    model = isoform.Model.load(path, task=None if cls == "FunnelModel" else "encoder")
    skips = config.get("attention_type") == "factorized" and config.get("separate_cls", True)
    for seq in range(1, 19):
        inputs = make_inputs(config, None, seed=seq, seq=seq)
        want = _run_reference(hf, inputs)
        if model.arch.length_problem(seq):
            with pytest.raises(InputError, match=f"a sequence of {seq} tokens"):
                model(**inputs)
            assert want is None or skips, seq
        else:
            assert want is not None, seq
            assert max_diff(model(**inputs).numpy(), want) <= TOL, seq


@pytest.mark.parametrize(("variant", "lengths"), [("default", [9, 13, 5]), ("factorized-no-separate-cls", [1, 2, 9])])
def test_other_lengths_on_every_backend(hf_checkpoint, backend, variant, lengths):
    """One compiled model at several lengths (odd, the shortest, one token) on each backend."""
    config = dict(FUNNEL, **VARIANTS[variant])
    path, hf = hf_checkpoint("FunnelForMaskedLM", **config)
    model = isoform.Model.load(path, backend=backend, task="masked-lm")
    for seq in lengths:
        inputs = make_inputs(config, "masked-lm", seed=seq, seq=seq)
        assert record_model(model, max_diff(model(**inputs).numpy(), reference(hf, inputs))) <= TOL, seq


@pytest.mark.parametrize("cls", ["FunnelBaseModel", "FunnelForSequenceClassification"])
def test_taskless_load_of_a_base_checkpoint_is_funnel_base_model(hf_checkpoint, tmp_path, cls):
    """As AutoModel: a checkpoint of FunnelBaseModel (or of a head built on it: no decoder weights)
    loads, without a task, as FunnelBaseModel, and saves as one."""
    import transformers

    path, hf = hf_checkpoint(cls, **config_for(FUNNEL, "sequence-classification"))
    model = isoform.Model.load(path)
    inputs = make_inputs(FUNNEL, None)
    base = hf if cls == "FunnelBaseModel" else hf.funnel
    want = reference(base, inputs)
    got = model(**inputs).numpy()
    assert got["last_hidden_state"].shape == (2, 3, FUNNEL["d_model"])  # 11 tokens pooled twice
    assert record_model(model, max_diff(got, want)) <= TOL
    model.save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["FunnelBaseModel"]
    back = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert type(back).__name__ == "FunnelBaseModel"
    assert max_diff(reference(back, inputs), want) <= TOL


def test_funnel_model_without_decoder_layers_still_upsamples(hf_checkpoint):
    """num_decoder_layers=0: no decoder weights, but FunnelModel (so named in config.json) still adds
    the upsampled last block to the first block's output."""
    config = dict(FUNNEL, num_decoder_layers=0)
    path, hf = hf_checkpoint("FunnelModel", **config)
    model = isoform.Model.load(path)
    inputs = make_inputs(config, None)
    assert model(**inputs)["last_hidden_state"].shape == (2, 11, FUNNEL["d_model"])
    assert record_model(model, max_diff(model(**inputs).numpy(), reference(hf, inputs))) <= TOL


def test_encoder_task_of_a_full_checkpoint_skips_the_decoder(hf_checkpoint):
    path, hf = hf_checkpoint("FunnelForMaskedLM", **FUNNEL)
    model = isoform.Model.load(path, task="encoder")
    assert not any(p.name.startswith("decoder.") for p in model.graph.params)
    inputs = make_inputs(FUNNEL, None)
    with torch.no_grad():
        full = hf.funnel(**{k: torch.from_numpy(v) for k, v in inputs.items()}, output_hidden_states=True)
    want = full.hidden_states[sum(FUNNEL["block_sizes"])].numpy()  # the encoder's last layer
    assert record_model(model, float(np.abs(model(**inputs).numpy()["last_hidden_state"] - want).max())) <= TOL


@pytest.mark.parametrize("task", ["masked-lm", "pretraining", "multiple-choice"])
def test_save_round_trip(hf_checkpoint, tmp_path, task):
    """isoform save -> transformers from_pretrained -> the same outputs; the tied LM head stays one tensor."""
    import transformers

    cls = {"masked-lm": "FunnelForMaskedLM", "pretraining": "FunnelForPreTraining",
           "multiple-choice": "FunnelForMultipleChoice"}[task]
    config = config_for(FUNNEL, task)
    path, _ = hf_checkpoint(cls, seed=1, **config)
    model = isoform.Model.load(path, task=task)
    assert [p.name for p in model.graph.params].count("embeddings.word_embeddings.weight") == 1
    assert "lm_head.weight" not in {p.name for p in model.graph.params}
    model.save(tmp_path)
    inputs = make_inputs(config, task)
    back = getattr(transformers, cls).from_pretrained(tmp_path).eval()
    assert record_model(model, max_diff(model(**inputs).numpy(), reference(back, inputs))) <= TOL


def test_not_padded_to_buckets(hf_checkpoint):
    """Padding changes which tokens pool together, so Funnel inputs are never padded to a bucket."""
    path, _ = hf_checkpoint("FunnelModel", **FUNNEL)
    model = isoform.Model.load(path)
    model.bucket = 16
    arrays = model._prepare(make_inputs(FUNNEL, None))[0]
    assert model._pad(arrays, 11)["input_ids"].shape[-1] == 11


@pytest.mark.parametrize(("change", "pattern"), [
    (dict(block_repeats=[1, 2]), r"block_repeats .*one entry per block"),
    (dict(block_sizes=[]), r"block_sizes must name at least one block"),
    (dict(d_model=33), r"d_model \(33\) must be even"),
    (dict(pooling_type="min"), r"pooling_type"),
    (dict(attention_type="absolute"), r"attention_type"),
    (dict(hidden_act="nope"), r"hidden_act: unknown activation"),
])
def test_bad_config_names_the_key(change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        get("funnel").from_config(dict(FUNNEL, model_type="funnel", **change))
