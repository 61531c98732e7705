"""Fuzzing what a checkpoint directory declares: ``config.json`` (hostile values, dropped keys, number
edits) for several families, and IR JSON (tree edits and byte edits). Every case loads and runs, or
raises an `IsoformError` naming the problem, within the harness's time limit per case (see
`isoform.testing.fuzz`; ``ISOFORM_FUZZ_SECONDS`` sets the budget, ``ISOFORM_FUZZ_SEED`` replays)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import isoform
from isoform.errors import ConfigError, GraphError
from isoform.ir import Graph
from isoform.testing.fuzz import fuzz, mutate_bytes, mutate_json

pytest.importorskip("transformers")

# (transformers class, config, task): one tiny checkpoint per family shape
FAMILIES = [
    ("BertForSequenceClassification", dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=20, max_position_embeddings=24), "sequence-classification"),
    ("GPT2LMHeadModel", dict(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=24), "causal-lm"),
    ("T5ForConditionalGeneration", dict(vocab_size=40, d_model=16, d_kv=8, d_ff=20, num_layers=2, num_heads=2,
                                        decoder_start_token_id=0), "seq2seq-lm"),
    ("ViTForImageClassification", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
                                       image_size=12, patch_size=4), "image-classification"),
    ("Wav2Vec2ForCTC", dict(vocab_size=12, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
                            conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3], num_conv_pos_embeddings=4,
                            num_conv_pos_embedding_groups=2), "ctc"),
]


@pytest.fixture(scope="module")
def family_dirs(hf_checkpoint) -> list[tuple[Path, dict, str]]:
    """(checkpoint directory, its config.json, task) per family."""
    dirs = [(hf_checkpoint(cls, **cfg)[0], task) for cls, cfg, task in FAMILIES]
    return [(path, json.loads((path / "config.json").read_text()), task) for path, task in dirs]


def test_config_json(family_dirs, tmp_path):
    """Mutated config.json values (types, negatives, zeros, huge ints, NaN, missing keys): load on
    NumPy and run a forward (and 2 generated tokens for LMs), or an IsoformError."""

    def target(rng: np.random.Generator) -> None:
        path, config, task = family_dirs[int(rng.integers(len(family_dirs)))]
        case = tmp_path / "case"
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir()
        for f in path.iterdir():
            if f.name != "config.json":
                os.symlink(f, case / f.name)
        (case / "config.json").write_text(json.dumps(mutate_json(config, rng, edits=int(rng.integers(1, 4)))))
        model = isoform.Model.load(case, task=task if rng.random() < 0.8 else None)
        model.warmup(batch=int(rng.integers(1, 3)), seq=int(rng.integers(1, 9)) * (400 if task == "ctc" else 1))
        if model.task in ("causal-lm", "seq2seq-lm"):
            model.generate(np.ones((1, 3), np.int64), max_new_tokens=2)

    report = fuzz("config.json", target)
    print(report)
    assert report.accepted and report.rejected, report


def test_huge_layer_count_fails_fast(family_dirs, tmp_path):
    """A config claiming 2^40 layers over a 2-layer checkpoint fails in well under a second, naming
    the layer count and the checkpoint's layers."""
    path, config, _ = family_dirs[0]
    shutil.copytree(path, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=2**31 - 1)))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"num_hidden_layers=2147483647.*layer indices: 0\.\.1"):
        isoform.Model.load(tmp_path / "ckpt")
    assert time.perf_counter() - start < 2.0
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=1099511627776)))
    with pytest.raises(ConfigError, match="num_hidden_layers = 1099511627776 is out of range"):
        isoform.Model.load(tmp_path / "ckpt")


def test_ir_json(family_dirs):
    """IR JSON edited as a tree or as bytes: `Graph.from_json` gives a graph that prints and
    round-trips, or a GraphError."""
    graphs = [isoform.Model.load(path, task=task).graph.to_json() for path, _, task in family_dirs[:2]]

    def target(rng: np.random.Generator) -> None:
        text = graphs[int(rng.integers(len(graphs)))]
        if rng.random() < 0.5:
            data = mutate_json(json.loads(text), rng, edits=int(rng.integers(1, 4)))
            text = json.dumps(data)
        else:
            text = mutate_bytes(text.encode(), rng)
        graph = Graph.from_json(text)
        str(graph)
        assert Graph.from_json(graph.to_json()).to_json() == graph.to_json()

    report = fuzz("IR JSON", target)
    print(report)
    assert report.rejected and report.errors.keys() <= {GraphError.__name__}, report
