"""Bad input to Model.load and Model.__call__: each a clear IsoformError naming what is wrong, raised
before any weights are compiled or any compute runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import isoform
from isoform.backends.numpy_ref import NumpyBackend
from isoform.errors import BackendError, ConfigError, InputError, WeightsError

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40)


@pytest.fixture
def ckpt(hf_checkpoint, tmp_path: Path) -> Path:
    """A private copy of a tiny BertModel checkpoint (tests may damage it)."""
    src, _ = hf_checkpoint("BertModel", **TINY)
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def no_compile(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records compile calls: a load that fails must fail before compiling anything."""
    calls: list = []
    monkeypatch.setattr(NumpyBackend, "compile", lambda self, graph, params: calls.append(graph))
    return calls


def edit_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def edit_tensors(path: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


# -- config ------------------------------------------------------------------------------------------
def test_unknown_model_type_lists_supported(ckpt, no_compile):
    edit_config(ckpt, model_type="gpt-99")
    with pytest.raises(ConfigError, match=r"unknown model_type 'gpt-99'.*bert.*camembert.*electra.*roberta"):
        isoform.Model.load(ckpt)
    assert not no_compile


def test_missing_model_type(ckpt):
    config = json.loads((ckpt / "config.json").read_text())
    del config["model_type"]
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"no 'model_type'.*supported model types"):
        isoform.Model.load(ckpt)


@pytest.mark.parametrize(("change", "key"), [
    ({"hidden_size": 30}, "hidden_size"),
    ({"vocab_size": -5}, "vocab_size"),
    ({"hidden_act": "wiggle"}, "hidden_act"),
    ({"layer_norm_eps": 0}, "layer_norm_eps"),
    ({"num_hidden_layers": "two"}, "num_hidden_layers"),
    ({"pad_token_id": 500}, "pad_token_id"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
])
def test_invalid_config_value_names_the_key(ckpt, no_compile, change, key):
    edit_config(ckpt, **change)
    with pytest.raises(ConfigError, match=key):
        isoform.Model.load(ckpt)
    assert not no_compile


def test_mpnet_bucket_count_transformers_cannot_run(hf_checkpoint, tmp_path):
    src, _ = hf_checkpoint("MPNetModel", **dict(TINY, pad_token_id=1, max_position_embeddings=42))
    shutil.copytree(src, tmp_path / "m")
    edit_config(tmp_path / "m", relative_attention_num_buckets=16)
    with pytest.raises(ConfigError, match="relative_attention_num_buckets: must be 32"):
        isoform.Model.load(tmp_path / "m")


def test_unknown_config_keys_are_kept(ckpt, tmp_path):
    edit_config(ckpt, my_custom_key={"a": 1})
    model = isoform.Model.load(ckpt)
    assert model.config.extra("my_custom_key") == {"a": 1}
    model.save(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["my_custom_key"] == {"a": 1}


def test_missing_config(tmp_path):
    with pytest.raises(ConfigError, match=r"no config\.json"):
        isoform.Model.load(tmp_path)


def test_unknown_task_lists_valid_ones(ckpt, no_compile):
    with pytest.raises(ConfigError, match=r"task 'causal-lm'.*'masked-lm'.*'question-answering'"):
        isoform.Model.load(ckpt, task="causal-lm")
    assert not no_compile


def test_unknown_task_for_electra_lists_its_tasks(hf_checkpoint):
    path, _ = hf_checkpoint("ElectraModel", **dict(TINY, embedding_size=16))
    with pytest.raises(ConfigError, match=r"'summarize' is not supported by model_type 'electra'.*'pretraining'"):
        isoform.Model.load(path, task="summarize")


def test_unknown_backend(ckpt):
    with pytest.raises(BackendError, match="unknown backend 'caffe'"):
        isoform.Model.load(ckpt, backend="caffe")


# -- weights ------------------------------------------------------------------------------------------
def test_missing_unexpected_and_wrong_shape_tensors_all_listed(ckpt, no_compile):
    def damage(t):
        del t["encoder.layer.1.output.dense.bias"]
        t["encoder.layer.0.surprise.weight"] = np.zeros(3, np.float32)
        t["embeddings.position_embeddings.weight"] = np.zeros((7, 32), np.float32)

    edit_tensors(ckpt, damage)
    with pytest.raises(WeightsError) as e:
        isoform.Model.load(ckpt)
    msg = str(e.value)
    assert "encoder.layer.1.output.dense.bias" in msg and "missing" in msg
    assert "encoder.layer.0.surprise.weight" in msg and "unexpected" in msg
    assert "embeddings.position_embeddings.weight" in msg and "wrong shape" in msg
    assert not no_compile


def test_task_head_missing_from_checkpoint(ckpt):
    """A head the checkpoint lacks is created, as transformers does, and named in a warning (the
    initialisation itself: tests/test_training.py); a missing backbone tensor stays an error (above)."""
    with pytest.warns(UserWarning, match=r"newly initialized: \['classifier\.weight', 'classifier\.bias'\]"):
        isoform.Model.load(ckpt, task="sequence-classification")


def test_truncated_safetensors(ckpt, no_compile):
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="truncated"):
        isoform.Model.load(ckpt)
    assert not no_compile


def test_malformed_safetensors_header(ckpt, no_compile):
    (ckpt / "model.safetensors").write_bytes(len(b"{not json").to_bytes(8, "little") + b"{not json" + b"\0" * 64)
    with pytest.raises(WeightsError, match="corrupt safetensors"):
        isoform.Model.load(ckpt)
    assert not no_compile


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(_Exploit.marker),))


def test_pickle_bin_that_is_not_a_state_dict_is_refused_not_run(ckpt, tmp_path, no_compile):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    (ckpt / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(99, 32), "x": _Exploit()}, ckpt / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="refused"):
        isoform.Model.load(ckpt)
    assert not marker.exists()
    assert not no_compile


def test_question_answering_needs_two_labels(hf_checkpoint, no_compile):
    src, _ = hf_checkpoint("BertForTokenClassification", **dict(TINY, num_labels=3))
    with pytest.raises(ConfigError, match="num_labels == 2"):
        isoform.Model.load(src, task="question-answering")
    assert not no_compile


# -- inputs --------------------------------------------------------------------------------------------
@pytest.fixture
def model(hf_checkpoint):
    path, _ = hf_checkpoint("BertModel", **TINY)
    m = isoform.Model.load(path)

    def explode(**_):
        raise AssertionError("computed on bad input")

    m.program = explode
    return m


IDS = np.ones((2, 5), np.int64)


@pytest.mark.parametrize(("inputs", "pattern"), [
    (dict(input_ids=np.array([[1, 2, 99]])), r"input_ids holds 99 at index \(0, 2\).*vocab_size"),
    (dict(input_ids=np.array([[1, -1]])), r"input_ids holds -1"),
    (dict(input_ids=np.ones((1, 41), np.int64)), r"sequence length 41.*maximum 40"),
    (dict(input_ids=IDS, attention_mask=np.ones((2, 4), np.int64)), r"attention_mask has shape \(2, 4\).*\(2, 5\)"),
    (dict(input_ids=IDS, token_type_ids=np.ones((1, 5), np.int64)), r"token_type_ids has shape"),
    (dict(input_ids=IDS, token_type_ids=np.full((2, 5), 2)), r"token_type_ids holds 2.*type_vocab_size"),
    (dict(input_ids=IDS, attention_mask=np.full((2, 5), 3)), r"attention_mask holds 3"),
    (dict(input_ids=IDS.astype(np.float32)), r"input_ids must hold integers"),
    (dict(input_ids=np.ones(5, np.int64)), r"input_ids must have shape \[batch, seq\]"),
    (dict(input_ids=np.ones((2, 0), np.int64)), r"input_ids is empty"),
    (dict(attention_mask=IDS), r"input_ids is required"),
    (dict(input_ids=IDS, pixel_values=IDS), r"unexpected input\(s\) \['pixel_values'\]"),
    (dict(input_ids=[[1, 2], [3]]), r"input_ids"),
])
def test_bad_inputs_rejected_before_compute(model, inputs, pattern):
    with pytest.raises(InputError, match=pattern):
        model(**inputs)


def test_multiple_choice_needs_rank_3(hf_checkpoint):
    path, _ = hf_checkpoint("BertForMultipleChoice", **TINY)
    m = isoform.Model.load(path, task="multiple-choice")
    with pytest.raises(InputError, match=r"\[batch, choices, seq\]"):
        m(input_ids=IDS)
