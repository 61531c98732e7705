"""Dropout: an IR op that is the identity in every inference program (no node survives `prepare`) and
is applied only by training programs: torch and tensorflow after ``m.train()``, jax in
``m.apply(params, rng=key, ...)``; kept elements scaled by 1 / (1 - rate), as torch, keras and flax do."""

from __future__ import annotations

import numpy as np
import pytest
from test_bert_family import TINY, make_inputs

import isoform
from isoform import backends
from isoform.errors import BackendError
from isoform.ir import GraphBuilder, fn

torch = pytest.importorskip("torch")

TOL = 1e-4
DROP = dict(TINY, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.0, classifier_dropout=0.5, num_labels=3)
TASK, CLS = "sequence-classification", "BertForSequenceClassification"


def _reference(hf_checkpoint):
    path, hf = hf_checkpoint(CLS, **DROP)
    inputs = make_inputs(DROP, TASK)
    hf.eval()
    with torch.no_grad():
        logits = hf(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
    return path, inputs, logits


def test_dropout_nodes_sit_where_transformers_drops_and_vanish_at_inference(hf_checkpoint) -> None:
    path, _, _ = _reference(hf_checkpoint)
    m = isoform.Model.load(path, task=TASK)
    rates = [n.attrs["rate"] for n in m.graph.nodes if n.op == "dropout"]
    # embeddings, attention output and feed-forward output of each layer (0.3), the classifier (0.5)
    assert rates == [0.3] * (1 + 2 * DROP["num_hidden_layers"]) + [0.5]
    for name in backends.available():
        ops = {n.op for n in backends.get(name).prepare(m.graph).nodes}
        assert "dropout" not in ops, name
        assert "dropout" in {n.op for n in backends.get(name).prepare(m.graph, training=True).nodes} or \
            name in ("numpy", "onnxruntime"), name


@pytest.mark.parametrize("backend_name", ["torch", "tensorflow"])
def test_train_mode_drops_and_eval_mode_matches_transformers(hf_checkpoint, backend_name: str) -> None:
    path, inputs, want = _reference(hf_checkpoint)
    m = isoform.Model.load(path, backend=backend_name, task=TASK)
    np.testing.assert_allclose(m(**inputs).numpy()["logits"], want, atol=TOL, rtol=TOL)
    m.train()
    a, b = (m(**inputs).numpy()["logits"] for _ in range(2))
    assert np.abs(a - want).max() > 10 * TOL and np.abs(a - b).max() > 10 * TOL  # fresh masks every call
    if backend_name == "torch":  # gradients flow through the dropped graph
        m(**inputs, labels=np.array([0, 2]))["loss"].backward()
        assert next(p for n, p in m.named_parameters() if n == "classifier.weight").grad is not None
    m.eval()
    np.testing.assert_allclose(m(**inputs).numpy()["logits"], want, atol=TOL, rtol=TOL)


def test_jax_apply_drops_with_a_key_only(hf_checkpoint) -> None:
    jax = pytest.importorskip("jax")
    path, inputs, want = _reference(hf_checkpoint)
    m = isoform.Model.load(path, backend="jax", task=TASK)
    np.testing.assert_allclose(np.asarray(m.apply(m.params, **inputs)["logits"]), want, atol=TOL, rtol=TOL)
    a = np.asarray(m.apply(m.params, rng=jax.random.key(0), **inputs)["logits"])
    again = np.asarray(m.apply(m.params, rng=jax.random.key(0), **inputs)["logits"])
    other = np.asarray(m.apply(m.params, rng=jax.random.key(1), **inputs)["logits"])
    np.testing.assert_array_equal(a, again)  # the key decides the masks
    assert np.abs(a - want).max() > 10 * TOL and np.abs(a - other).max() > 10 * TOL
    grads = jax.grad(lambda p: m.apply(p, rng=jax.random.key(0), **inputs, labels=np.array([0, 2]))["loss"])(m.params)
    assert np.abs(np.asarray(grads["classifier.weight"])).max() > 0
    with pytest.raises(BackendError, match="PRNG key"):  # no key, no dropout: a keyless lowering is an error
        backends.get("jax").lowerings["dropout"](np.ones(3, np.float32), rate=0.5)


def _dropout_graph(rate: float):
    g = GraphBuilder("drop")
    g.output("y", fn.dropout(g.input("x", [4000], "f32"), rate=rate))
    return g.build()


@pytest.mark.parametrize("backend_name", ["torch", "tensorflow", "jax"])
def test_training_programs_zero_rate_of_elements_and_rescale_the_rest(backend_name: str) -> None:
    rate, x = 0.25, np.full(4000, 2.0, np.float32)
    program = backends.get(backend_name).compile(_dropout_graph(rate), {})
    np.testing.assert_array_equal(np.asarray(backends.get(backend_name).to_numpy(program(x=x)["y"])), x)
    if backend_name == "jax":
        import jax

        y = np.asarray(program.training_fn({}, {"x": x}, jax.random.key(3))["y"])
    else:
        program.train(True)
        y = backends.get(backend_name).to_numpy(program(x=x)["y"])
    dropped = np.mean(y == 0)
    assert abs(dropped - rate) < 0.04, dropped
    np.testing.assert_allclose(y[y != 0], 2.0 / (1 - rate), rtol=1e-6)
