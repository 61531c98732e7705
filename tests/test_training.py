"""Fine-tuning: ``labels=`` losses equal to transformers' for every head and backend, new task heads
initialised as transformers does, torch outputs usable by autograd, and the README's training loops
(torch AdamW, JAX optax, TensorFlow Keras Adam) run for 3 steps from transformers' loss downwards."""

from __future__ import annotations

import ast
import shutil
import warnings

import numpy as np
import pytest
from test_bert_family import TINY, make_inputs
from test_decoders import GPT2
from test_seq2seq import BART
from test_seq2seq import make_inputs as seq2seq_inputs

import isoform
from isoform.errors import BackendError, InputError, WeightsError

torch = pytest.importorskip("torch")

TOL = 1e-4
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
BERT = dict(TINY, **NO_DROPOUT)


def _labels(kind: str, inputs: dict[str, np.ndarray], rng: np.random.Generator, classes: int) -> dict[str, np.ndarray]:
    ids = inputs["input_ids"]
    if kind == "tokens":  # every position a class, a few ignored (-100), padding ignored
        y = rng.integers(0, classes, ids.shape)
        y[..., 2] = -100
        y[inputs["attention_mask"] == 0] = -100
        return {"labels": y}
    if kind == "positions":  # row 0 in range, row 1 negative start (clamped to 0) and end past seq (ignored)
        return {"start_positions": np.array([3, -2]), "end_positions": np.array([5, 40])}
    if kind == "regression":
        return {"labels": rng.normal(size=ids.shape[0]).astype(np.float32)}
    if kind == "multi_label":
        return {"labels": rng.integers(0, 2, (ids.shape[0], classes)).astype(np.float32)}
    return {"labels": rng.integers(0, classes, ids.shape[0])}  # single label, multiple choice


# (case id, transformers class, config, isoform task, kind of labels)
CASES = [
    ("masked-lm", "BertForMaskedLM", BERT, "masked-lm", "tokens"),
    ("token-classification", "BertForTokenClassification", dict(BERT, num_labels=5), "token-classification", "tokens"),
    ("regression", "BertForSequenceClassification", dict(BERT, num_labels=1), "sequence-classification", "regression"),
    ("single-label", "BertForSequenceClassification", dict(BERT, num_labels=3), "sequence-classification", "single"),
    ("multi-label", "BertForSequenceClassification", dict(BERT, num_labels=3), "sequence-classification", "multi_label"),
    ("question-answering", "BertForQuestionAnswering", dict(BERT, num_labels=2), "question-answering", "positions"),
    ("multiple-choice", "BertForMultipleChoice", BERT, "multiple-choice", "single"),
    ("causal-lm", "GPT2LMHeadModel", GPT2, "causal-lm", "tokens"),
    ("seq2seq-lm", "BartForConditionalGeneration", BART, "seq2seq-lm", "tokens"),
]


def _case(hf_checkpoint, cls: str, config: dict, task: str, kind: str, seed: int = 0):
    path, hf = hf_checkpoint(cls, **config)
    rng = np.random.default_rng(seed)
    if task == "seq2seq-lm":  # labels, no decoder_input_ids: both sides derive them by shifting labels right
        inputs = seq2seq_inputs(config, seed)
        del inputs["decoder_input_ids"], inputs["decoder_attention_mask"]
        labels = {"labels": rng.integers(3, config["vocab_size"], (2, 6))}
        labels["labels"][0, -2:] = -100
    else:
        inputs = make_inputs(config, "multiple-choice" if task == "multiple-choice" else None, seed)
        if task == "causal-lm":
            inputs.pop("token_type_ids", None)
        classes = {"multiple-choice": 3, "masked-lm": config["vocab_size"], "causal-lm": config["vocab_size"]}
        labels = _labels(kind, inputs, rng, classes.get(task, config.get("num_labels", 2)))
    return path, hf, inputs, labels


def hf_loss(hf, inputs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> float:
    """transformers' loss; problem_type reset around the call (transformers stores the one it infers)."""
    problem = getattr(hf.config, "problem_type", None)
    try:
        with torch.no_grad():
            return float(hf(**{k: torch.from_numpy(v) for k, v in {**inputs, **labels}.items()}).loss)
    finally:
        hf.config.problem_type = problem


@pytest.mark.parametrize(("cls", "config", "task", "kind"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_loss_equals_transformers(hf_checkpoint, backend, cls, config, task, kind):
    path, hf, inputs, labels = _case(hf_checkpoint, cls, config, task, kind)
    want = hf_loss(hf, inputs, labels)
    m = isoform.Model.load(path, backend=backend, task=task)
    out = m(**inputs, **labels)
    assert next(iter(out)) == "loss", "loss comes first, as in transformers"
    got = float(out.numpy()["loss"])
    assert abs(got - want) < TOL, (got, want)
    assert set(out) - {"loss"} == set(m(**inputs)), "the other outputs are the forward's"


def test_seq2seq_labels_shift_like_transformers(hf_checkpoint):
    """decoder_input_ids derived from labels: decoder_start_token_id first, -100 read as pad."""
    path, _, inputs, labels = _case(hf_checkpoint, "BartForConditionalGeneration", BART, "seq2seq-lm", "tokens")
    m = isoform.Model.load(path, task="seq2seq-lm")
    from transformers.models.bart.modeling_bart import shift_tokens_right

    dec = shift_tokens_right(torch.from_numpy(labels["labels"]), BART["pad_token_id"], BART["decoder_start_token_id"])
    want = m(**inputs, decoder_input_ids=dec.numpy()).numpy()["logits"]
    np.testing.assert_array_equal(m(**inputs, **labels).numpy()["logits"], want)


def test_bad_labels_are_refused_early(hf_checkpoint):
    path, _ = hf_checkpoint("BertForSequenceClassification", **dict(BERT, num_labels=3))
    m = isoform.Model.load(path, task="sequence-classification")
    ids = np.ones((2, 5), np.int64)
    with pytest.raises(InputError, match=r"labels holds 3 at index \(1,\).*\[0, 3\) or -100"):
        m(input_ids=ids, labels=np.array([0, 3]))
    with pytest.raises(InputError, match="non-finite"):
        m(input_ids=ids, labels=np.array([[0.0, np.nan, 1.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(InputError, match="labels"):
        m(input_ids=ids, labels=np.array([[0, 1], [1, 2]]))  # int labels of the wrong shape
    qa_path, _ = hf_checkpoint("BertForQuestionAnswering", **dict(BERT, num_labels=2))
    with pytest.raises(InputError, match=r"takes labels \['start_positions', 'end_positions'\]"):
        isoform.Model.load(qa_path, task="question-answering")(input_ids=ids, start_positions=np.array([0, 1]))
    bare, _ = hf_checkpoint("BertModel", **BERT)
    with pytest.raises(InputError, match="task None has no loss"):
        isoform.Model.load(bare)(input_ids=ids, labels=np.array([0, 1]))


GRADIENT_PARAMS = ("classifier.weight", "pooler.dense.bias", "encoder.layer.0.attention.self.query.weight",
                   "embeddings.word_embeddings.weight")


def _gradients(m, backend: str, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """d loss / d param on the model's backend, by graph name, as NumPy."""
    if backend == "torch":
        m.train()
        m(**batch)["loss"].backward()
        return {n: p.grad.numpy() for n, p in m.named_parameters()}
    if backend == "jax":
        import jax

        return {n: np.asarray(g) for n, g in jax.grad(lambda p: m.apply(p, **batch)["loss"])(m.params).items()}
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = m(**batch)["loss"]
    names = {id(v): n for n, v in m.params.variables_by_name.items()}
    grads = tape.gradient(loss, m.trainable_variables)  # embeddings: IndexedSlices
    return {names[id(v)]: tf.convert_to_tensor(g).numpy() for v, g in zip(m.trainable_variables, grads)}


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_gradients_equal_transformers(hf_checkpoint, backend):
    """The loss chained after the forward program differentiates natively to transformers' gradients."""
    path, hf, inputs, labels = _case(hf_checkpoint, "BertForSequenceClassification", dict(BERT, num_labels=3),
                                     "sequence-classification", "single")
    hf.zero_grad(set_to_none=True)
    try:
        hf(**{k: torch.from_numpy(v) for k, v in {**inputs, **labels}.items()}).loss.backward()
        hf_params = dict(hf.named_parameters())
        want = {n: hf_params[n if n.startswith("classifier") else "bert." + n].grad.numpy() for n in GRADIENT_PARAMS}
    finally:
        hf.zero_grad(set_to_none=True)
        hf.config.problem_type = None
    got = _gradients(isoform.Model.load(path, backend=backend, task="sequence-classification"), backend,
                     {**inputs, **labels})
    for name in GRADIENT_PARAMS:
        g = got[name].T if got[name].ndim == 2 and "embeddings" not in name else got[name]  # linear: [in, out]
        assert np.abs(want[name]).max() > 1e-4, f"{name}: transformers' gradient is ~0, the check is void"
        np.testing.assert_allclose(g, want[name], atol=1e-5, err_msg=name)


# -- new heads ---------------------------------------------------------------------------------------
def test_new_head_is_initialised_as_transformers_does(hf_checkpoint):
    bare, _ = hf_checkpoint("BertModel", **BERT)
    with pytest.warns(UserWarning, match="newly initialized") as caught:
        m = isoform.Model.load(bare, task="sequence-classification", num_labels=4, seed=1)
    (message,) = [str(w.message) for w in caught if "newly initialized" in str(w.message)]
    assert message.split("newly initialized: ")[1].split("\n")[0] == "['classifier.weight', 'classifier.bias']"
    assert m.config.num_labels == 4 and m.config.id2label == {str(i): f"LABEL_{i}" for i in range(4)}
    p = m.program.numpy_params()
    w = p["classifier.weight"]
    assert w.shape == (32, 4) and abs(w.std() - 0.02) < 0.005 and abs(w.mean()) < 0.005
    assert not p["classifier.bias"].any()
    with pytest.warns(UserWarning, match="newly initialized"):
        again = isoform.Model.load(bare, task="sequence-classification", num_labels=4, seed=1)
        other = isoform.Model.load(bare, task="sequence-classification", num_labels=4, seed=2)
    np.testing.assert_array_equal(again.program.numpy_params()["classifier.weight"], w)  # seeded
    assert not np.array_equal(other.program.numpy_params()["classifier.weight"], w)


def test_minilm_with_a_new_head_matches_transformers_given_the_same_head(minilm_dir):
    """The issue's case: all-MiniLM-L6-v2 (a bare BertModel checkpoint) as a 3-label classifier."""
    with pytest.warns(UserWarning, match="newly initialized"):
        m = isoform.Model.load(minilm_dir, backend="torch", task="sequence-classification", num_labels=3)
    import transformers

    hf = transformers.AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=3).eval()
    head = m.program.numpy_params()
    hf.classifier.weight.data = torch.from_numpy(head["classifier.weight"].T.copy())
    hf.classifier.bias.data = torch.from_numpy(head["classifier.bias"])
    ids = np.array([[101, 7592, 2088, 102, 0], [101, 2204, 2154, 2003, 102]])
    batch = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64), "labels": np.array([0, 2])}
    with torch.no_grad():
        want = hf(**{k: torch.from_numpy(v) for k, v in batch.items()})
    got = m(**batch).numpy()
    assert abs(float(got["loss"]) - float(want.loss)) < TOL
    np.testing.assert_allclose(got["logits"], want.logits.numpy(), atol=TOL)


def test_new_lm_head_norm_ones_and_tie_kept(hf_checkpoint):
    bare, _ = hf_checkpoint("BertModel", **BERT)
    with pytest.warns(UserWarning, match="newly initialized") as caught:
        m = isoform.Model.load(bare, task="masked-lm")
    listed = next(str(w.message) for w in caught if "newly initialized" in str(w.message))
    new = ["cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
           "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
           "cls.predictions.bias"]
    assert sorted(ast.literal_eval(listed.split("newly initialized: ")[1].split("\n")[0])) == sorted(new)
    p = m.program.numpy_params()
    assert (p["cls.predictions.transform.LayerNorm.weight"] == 1).all()
    assert not p["cls.predictions.transform.LayerNorm.bias"].any() and not p["cls.predictions.bias"].any()


def test_missing_backbone_tensor_is_still_refused(hf_checkpoint, tmp_path):
    from safetensors.numpy import load_file, save_file

    bare, _ = hf_checkpoint("BertModel", **BERT)
    shutil.copy(bare / "config.json", tmp_path / "config.json")
    tensors = load_file(bare / "model.safetensors")
    del tensors["encoder.layer.1.output.dense.weight"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"(?s)1 problems.*missing.*'encoder\.layer\.1\.output\.dense\.weight'"):
        isoform.Model.load(tmp_path, task="sequence-classification", num_labels=3)


# -- torch view ----------------------------------------------------------------------------------------
def test_torch_outputs_are_ordinary_tensors(minilm_dir):
    m = isoform.Model.load(minilm_dir, backend="torch")
    ids = np.array([[101, 7592, 2088, 102]])
    out = m(input_ids=ids)
    torch.nn.Linear(384, 2)(out.last_hidden_state).sum().backward()  # the snippet of the issue
    assert not m.training and not out.last_hidden_state.requires_grad  # eval: no autograd recorded
    assert all(p.grad is None for p in m.parameters())
    m.train()
    m(input_ids=ids).last_hidden_state.sum().backward()
    assert m.training and dict(m.named_parameters())["encoder.layer.0.attention.self.query.weight"].grad is not None
    with torch.no_grad():
        assert not m(input_ids=ids).last_hidden_state.requires_grad


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_inference_only_backends_refuse_training(hf_checkpoint, backend):
    path, _ = hf_checkpoint("BertForSequenceClassification", **dict(BERT, num_labels=3))
    m = isoform.Model.load(path, backend=backend, task="sequence-classification")
    with pytest.raises(BackendError, match=f"backend {backend!r} runs inference only"):
        m.train()
    with pytest.raises(BackendError, match="torch backend's view"):
        m.parameters()
    with pytest.raises(BackendError, match="jax backend's functional form"):
        m.apply({}, input_ids=np.ones((1, 3), np.int64))


# -- the README's loops ---------------------------------------------------------------------------
@pytest.fixture
def classification(hf_checkpoint):
    path, hf = hf_checkpoint("BertForSequenceClassification", **dict(BERT, num_labels=3))
    batch = make_inputs(BERT, None)
    labels = np.array([0, 2])
    return path, hf_loss(hf, batch, {"labels": labels}), batch, labels


def test_readme_torch_loop(classification):
    path, want, batch, labels = classification
    m = isoform.Model.load(path, backend="torch", task="sequence-classification")
    m.train()
    optimizer = torch.optim.AdamW(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = m(**batch, labels=labels)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    m.eval()
    assert abs(losses[0] - want) < TOL and losses[2] < losses[1] < losses[0], losses
    assert float(m(**batch, labels=labels)["loss"]) < losses[2]


def test_readme_jax_loop(classification):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    path, want, batch, labels = classification
    m = isoform.Model.load(path, backend="jax", task="sequence-classification")
    optimizer = optax.adamw(1e-3)

    @jax.jit
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(lambda p: m.apply(p, **batch)["loss"])(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params = m.params
    state = optimizer.init(params)
    losses = []
    for _ in range(3):
        params, state, loss = step(params, state, {**batch, "labels": labels})
        losses.append(float(loss))
    m.params = params
    assert abs(losses[0] - want) < TOL and losses[2] < losses[1] < losses[0], losses
    assert float(m(**batch, labels=labels).numpy()["loss"]) < losses[2]


def test_readme_tensorflow_loop(classification):
    tf = pytest.importorskip("tensorflow")
    path, want, batch, labels = classification
    m = isoform.Model.load(path, backend="tensorflow", task="sequence-classification")
    optimizer = tf.keras.optimizers.Adam(1e-3)
    losses = []
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = m(**batch, labels=labels)["loss"]
        grads = tape.gradient(loss, m.trainable_variables)
        optimizer.apply_gradients(zip(grads, m.trainable_variables))
        losses.append(float(loss))
    assert abs(losses[0] - want) < TOL and losses[2] < losses[1] < losses[0], losses
    assert float(m(**batch, labels=labels).numpy()["loss"]) < losses[2]


def test_jax_params_assignment_is_checked(classification):
    path, _, batch, _ = classification
    m = isoform.Model.load(path, backend="jax", task="sequence-classification")
    with pytest.raises(InputError, match="names and shapes"):
        m.params = {k: v for k, v in m.params.items() if k != "classifier.bias"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.params = {k: v * 0 for k, v in m.params.items()}
    assert not m(**batch).numpy()["logits"].any()
