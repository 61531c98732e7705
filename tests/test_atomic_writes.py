"""Nothing half-done on failure: a save, export or processor save that fails part-way leaves the
target directory exactly as it was (old files intact, no partial or staging files), and one into a
new directory leaves no directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import isoform
from isoform.weights import saving

pytest.importorskip("transformers")

BERT = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20)
GPT2 = dict(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=24)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


class Boom(RuntimeError):
    pass


def fail_after(n: int):
    """A stand-in for a writer that fails on its (n+1)-th call, after writing part of a file."""
    calls = []
    real = saving._write_safetensors

    def write(path, entries, produce, meta):
        calls.append(path)
        if len(calls) > n:
            path.write_bytes(b"partial")
            raise Boom("disk full")
        real(path, entries, produce, meta)

    return write


@pytest.mark.parametrize("shard", ["5GB", "2KB"])
def test_failed_save_leaves_old_files(hf_checkpoint, tmp_path, monkeypatch, shard):
    path, _ = hf_checkpoint("BertModel", **BERT)
    model = isoform.Model.load(path)
    target = tmp_path / "saved"
    model.save(target)
    before = snapshot(target)
    monkeypatch.setattr(saving, "_write_safetensors", fail_after(1 if shard == "2KB" else 0))
    with pytest.raises(Boom):
        model.save(target, max_shard_size=shard)
    assert snapshot(target) == before  # no partial file, no staging directory
    with pytest.raises(Boom):
        model.save(tmp_path / "fresh" / "dir", max_shard_size=shard)
    assert not (tmp_path / "fresh" / "dir").exists()


def test_resharded_save_replaces_old_shards(hf_checkpoint, tmp_path):
    """A successful save removes the shards of an earlier, differently sharded save, and the result loads."""
    path, _ = hf_checkpoint("BertModel", **BERT)
    model = isoform.Model.load(path)
    target = tmp_path / "saved"
    model.save(target, max_shard_size="2KB")
    assert (target / "model.safetensors.index.json").exists()
    written = model.save(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in written) == ["config.json", "generation_config.json", "model.safetensors"]
    ids = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(isoform.Model.load(target)(input_ids=ids).numpy()["last_hidden_state"],
                                  model(input_ids=ids).numpy()["last_hidden_state"])


def test_failed_generation_export_leaves_nothing(hf_checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from isoform.backends import onnx as onnx_export

    path, _ = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    model = isoform.Model.load(path, task="causal-lm")
    target = tmp_path / "onnx"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    real = onnx_export.to_model

    def broken(graph, *args, **kwargs):
        raise Boom(f"cannot lower {graph.name}")

    monkeypatch.setattr(onnx_export, "to_model", broken)
    with pytest.raises(Boom):
        model.export_generation_onnx(target)
    assert snapshot(target) == {"keep.txt": b"old"}
    monkeypatch.setattr(onnx_export, "to_model", real)
    assert [p.name for p in model.export_generation_onnx(target)] == ["decoder.onnx"]
    shutil.rmtree(target)


def test_failed_tokenizer_save_leaves_old_files(minilm_dir, tmp_path, monkeypatch):
    from isoform.tokenization import saving as tokenizer_saving

    tok = isoform.Tokenizer.load(minilm_dir)
    target = tmp_path / "tok"
    tok.save(target)
    before = snapshot(target)
    real = tokenizer_saving._write

    def write(path, data):
        if path.name == "special_tokens_map.json":  # the last file: the others are already written
            raise Boom("disk full")
        real(path, data)

    monkeypatch.setattr(tokenizer_saving, "_write", write)
    with pytest.raises(Boom):
        tok.save(target)
    assert snapshot(target) == before
