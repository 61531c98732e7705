"""Input specs through `Model`: a float input and a structured [batch, seq, 7] int input are ordinary
inputs, checked once from the architecture's specs (names, kinds, shapes, ranges, finiteness) on
every backend, padded to compile buckets along ``seq`` and cut back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

import isoform
from isoform.architectures import FLOAT, REGISTRY, ArchConfig, Architecture, Inputs, InputSpec, Limit
from isoform.architectures.base import register
from isoform.errors import InputError
from isoform.ir import GraphBuilder, fn
from isoform.ir.dtypes import as_dtype
from isoform.layers import embedding, linear
from isoform.weights import Rename, Transpose

VOCAB, TYPES, COLUMNS, FEATURES, HIDDEN, MAX = 11, 3, 7, 4, 5, 40


class TabularConfig(ArchConfig):
    vocab_size: int = VOCAB


class Tabular(Architecture):
    """Token embeddings + seven token-type embeddings (as TAPAS) + a linear map of float features."""

    model_type = "test-tabular"
    Config = TabularConfig
    tasks = {None: "TabularModel"}
    max_length = MAX

    def input_specs(self, task):
        return Inputs([
            InputSpec("input_ids", ("batch", "seq"), high=VOCAB, bound="vocab_size", pad=1),
            InputSpec("token_type_ids", ("batch", "seq", COLUMNS), high=TYPES, bound="type_vocab_size",
                      default=lambda a: np.zeros((*a["input_ids"].shape, COLUMNS), np.int64)),
            InputSpec("features", ("batch", "seq", FEATURES), FLOAT),
        ], limits={"seq": Limit("sequence length", MAX, "max_position_embeddings")})

    def build(self, task=None, dtype="float32"):
        g = GraphBuilder("tabular", dtype=as_dtype(dtype))
        ids, types, features = (s.declare(g) for s in self.input_specs(task).specs)
        x = embedding(ids, "words", VOCAB, HIDDEN)
        for j in range(COLUMNS):
            x = x + embedding(types[..., j], f"types.{j}", TYPES, HIDDEN)
        x = x + fn.tanh(linear(features, "proj", FEATURES, HIDDEN))
        g.output("last_hidden_state", x)
        return g.build()

    def rules(self, task, *, pooler):
        return [Rename("proj.weight", "proj.weight", Transpose()),
                *(Rename(n, n) for n in ("proj.bias", "words.weight", *(f"types.{j}.weight" for j in range(COLUMNS))))]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    register(Tabular)
    rng = np.random.default_rng(0)
    weights = {"words.weight": rng.normal(size=(VOCAB, HIDDEN)), "proj.weight": rng.normal(size=(HIDDEN, FEATURES)),
               "proj.bias": rng.normal(size=HIDDEN),
               **{f"types.{j}.weight": rng.normal(size=(TYPES, HIDDEN)) for j in range(COLUMNS)}}
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    path = tmp_path_factory.mktemp("tabular")
    save_file(weights, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"model_type": Tabular.model_type}))
    yield path, weights
    REGISTRY.pop(Tabular.model_type)


def expected(w, ids, types, features):
    x = w["words.weight"][ids] + sum(w[f"types.{j}.weight"][types[..., j]] for j in range(COLUMNS))
    return x + np.tanh(features @ w["proj.weight"].T + w["proj.bias"])


def batch(seq=6):
    rng = np.random.default_rng(1)
    return (rng.integers(0, VOCAB, (2, seq)), rng.integers(0, TYPES, (2, seq, COLUMNS)),
            rng.normal(size=(2, seq, FEATURES)).astype(np.float32))


def test_float_and_structured_inputs_run_on_every_backend(checkpoint, backend):
    path, w = checkpoint
    model = isoform.Model.load(path, backend=backend)
    ids, types, features = batch()
    out = model(input_ids=ids, token_type_ids=types, features=features).numpy()["last_hidden_state"]
    assert out.shape == (2, 6, HIDDEN)  # cut back from the padding bucket of jitted backends
    np.testing.assert_allclose(out, expected(w, ids, types, features), atol=1e-5)
    default = model(input_ids=ids, features=features.astype(np.float64)).numpy()["last_hidden_state"]
    np.testing.assert_allclose(default, expected(w, ids, np.zeros_like(types), features), atol=1e-5)


IDS, TYPE_IDS, FEATS = batch()


@pytest.mark.parametrize(("inputs", "pattern"), [
    (dict(input_ids=IDS, features=FEATS.astype(np.int64)), r"features must hold floats, got dtype int64"),
    (dict(input_ids=IDS, features=np.where(np.arange(FEATURES) == 2, np.nan, FEATS)),
     r"features holds nan at index \(0, 0, 2\): float inputs must be finite"),
    (dict(input_ids=IDS, features=FEATS[..., :3]), r"features must have shape \[batch, seq, 4\].*dim 2 must be 4"),
    (dict(input_ids=IDS, features=FEATS[0]), r"features must have shape \[batch, seq, 4\], got shape \(6, 4\)"),
    (dict(input_ids=IDS, features=FEATS[:, :5]), r"features has shape \(2, 5, 4\), but input_ids .*dim 'seq'"),
    (dict(input_ids=IDS, token_type_ids=TYPE_IDS[:1], features=FEATS), r"token_type_ids .* agree in dim 'batch'"),
    (dict(input_ids=IDS, token_type_ids=TYPE_IDS + 1, features=FEATS), r"token_type_ids holds 3 .*type_vocab_size"),
    (dict(input_ids=IDS, token_type_ids=TYPE_IDS[..., :6], features=FEATS), r"dim 2 must be 7"),
    (dict(input_ids=IDS), r"features is required"),
    (dict(input_ids=np.ones((2, 41), np.int64), features=np.ones((2, 41, 4), np.float32)),
     r"input_ids has sequence length 41, longer than this model's maximum 40"),
    (dict(input_ids=IDS[:, :0], features=FEATS[:, :0]), r"input_ids is empty: dim 'seq'"),
    (dict(input_ids=IDS, features=FEATS, pixel_values=FEATS), r"unexpected input\(s\) \['pixel_values'\]"),
])
def test_bad_inputs_name_the_input(checkpoint, inputs, pattern):
    model = isoform.Model.load(checkpoint[0])

    def explode(**_):
        raise AssertionError("computed on bad input")

    model.program = explode
    with pytest.raises(InputError, match=pattern):
        model(**inputs)


def test_warmup_builds_inputs_from_the_specs(checkpoint):
    assert isoform.Model.load(checkpoint[0], backend="jax").warmup(batch=2, seq=8) > 0
