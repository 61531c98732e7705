"""Training losses as IR, each written once, and the small per-task loss graphs `Model` chains after
its forward graph (inputs: the head's outputs and the labels; output: ``loss``), as transformers
computes them when given ``labels`` (``start_positions``/``end_positions`` for question answering):

* ``masked-lm``, ``token-classification``, ``seq2seq-lm``: `cross_entropy` over every position;
  ``causal-lm``: the same on labels shifted left by one (a ``-100`` appended), as ``ForCausalLMLoss``.
* ``sequence-classification``: ``problem_type`` ``regression`` (`mse`; num_labels 1 squeezes),
  ``single_label_classification`` (`cross_entropy`) or ``multi_label_classification``
  (`bce_with_logits`); unset, it is inferred as transformers does (`problem_type`).
* ``multiple-choice``: `cross_entropy` over the choices; ``question-answering``: the mean of the
  start and end cross entropies, positions clamped to ``[0, seq]`` and ``seq`` ignored.

Losses are computed in float32 whatever the model's dtype. `shift_graph` is transformers'
``shift_tokens_right``: a seq2seq model given ``labels`` and no ``decoder_input_ids`` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError
from ..ir import Graph, GraphBuilder, Tensor, fn
from ..ir.registry import TensorType

IGNORE_INDEX = -100
REGRESSION, SINGLE, MULTI = "regression", "single_label_classification", "multi_label_classification"
PROBLEM_TYPES = (REGRESSION, SINGLE, MULTI)
TOKEN_TASKS = ("masked-lm", "token-classification", "seq2seq-lm", "causal-lm")
LOSS_TASKS = (*TOKEN_TASKS, "sequence-classification", "multiple-choice", "question-answering")


def _all(x: Tensor) -> list[int]:
    return list(range(x.ndim))


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean of ``-log_softmax(logits)[label]`` over the labels that name a class (``-100``, and any
    label outside ``[0, classes)``, is ignored), as ``nn.CrossEntropyLoss``; logits [..., classes],
    labels [...] integer. The class is picked by a one-hot ``where`` (no gather: ignored labels
    need no index fixing), counted by the same mask; nan when no label counts (0 / 0, as torch)."""
    g = logits.builder
    classes = g.add("iota", shape=[*labels.shape, logits.shape[-1]], axis=-1, dtype=labels.dtype)
    hot = fn.eq(classes, labels[..., None])
    logp = fn.log_softmax(logits.cast("f32"), axis=-1)
    picked = fn.where(hot, logp, g.constant(0.0, "f32")).sum(_all(logp))
    return -picked / hot.cast("f32").sum(_all(hot))


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error over all elements (``nn.MSELoss``)."""
    d = x.cast("f32") - y.cast("f32")
    return (d * d).mean(_all(d))


def bce_with_logits(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean binary cross entropy of ``sigmoid(logits)`` against ``targets`` in [0, 1], in torch's
    stable form ``max(x, 0) - x * y + log(1 + exp(-|x|))`` (``nn.BCEWithLogitsLoss``)."""
    x, y = logits.cast("f32"), targets.cast("f32")
    loss = fn.maximum(x, 0.0) - x * y + fn.log(1.0 + fn.exp(-fn.abs(x)))
    return loss.mean(_all(loss))


def label_names(task: str | None) -> tuple[str, ...]:
    """The label inputs a task's loss takes (empty: the task has no loss)."""
    if task == "question-answering":
        return ("start_positions", "end_positions")
    return ("labels",) if task in LOSS_TASKS else ()


def problem_type(configured: str | None, num_labels: int, integer_labels: bool) -> str:
    """``sequence-classification``'s loss: the config's ``problem_type``, else as transformers infers
    it: regression for one label, single-label for integer labels, multi-label otherwise."""
    if configured is not None:
        if configured not in PROBLEM_TYPES:
            raise ConfigError(f"config problem_type {configured!r} is not one of {list(PROBLEM_TYPES)}")
        return configured
    if num_labels == 1:
        return REGRESSION
    return SINGLE if integer_labels else MULTI


def loss_graph(task: str, outputs: Mapping[str, TensorType], problem: str | None = None, label_rank: int | None = None
               ) -> Graph:
    """The loss graph of ``task`` over the forward graph's ``outputs`` (name -> type; symbolic dims
    kept, so one graph serves every batch and length). ``problem``: the sequence-classification
    problem type (`problem_type`); ``label_rank``: its labels' rank (regression with one label takes
    [batch] or [batch, 1])."""
    g = GraphBuilder(f"loss:{task}", metadata={"task": task})
    if task == "question-answering":
        losses = []
        for side in ("start", "end"):
            logits = g.input(f"{side}_logits", outputs[f"{side}_logits"].shape, "f32")
            positions = g.input(f"{side}_positions", ["batch"], "i64")
            losses.append(cross_entropy(logits, fn.maximum(positions, 0)))  # > seq: ignored, as clamp + ignore_index
        g.output("loss", (losses[0] + losses[1]) / 2.0)
        return g.build()
    shape = outputs["logits"].shape
    logits = g.input("logits", shape, "f32")
    if task in TOKEN_TASKS or task == "multiple-choice" or problem == SINGLE:
        labels = g.input("labels", shape[:-1], "i64")
        if task == "causal-lm":  # position t predicts token t + 1
            labels = fn.pad(labels, pads=[[0, 0], [0, 1]], value=float(IGNORE_INDEX))[:, 1:]
        loss = cross_entropy(logits, labels)
    elif problem == REGRESSION and shape[-1] == 1:
        labels = g.input("labels", ["batch", 1][:label_rank or 1], "f32")
        loss = mse(logits.reshape("batch"), labels.reshape("batch"))
    else:
        labels = g.input("labels", shape, "f32")
        loss = mse(logits, labels) if problem == REGRESSION else bce_with_logits(logits, labels)
    g.output("loss", loss)
    return g.build()


def shift_graph(start: int, pad: int) -> Graph:
    """``decoder_input_ids`` from seq2seq ``labels`` [batch, target]: ``start`` then ``labels[:, :-1]``,
    ``-100`` replaced by ``pad`` (transformers' ``shift_tokens_right``)."""
    g = GraphBuilder("shift-labels")
    labels = g.input("labels", ["batch", "target"], "i64")
    shifted = fn.pad(labels, pads=[[0, 0], [1, 0]], value=float(start))[:, :-1]
    g.output("decoder_input_ids", fn.where(fn.eq(shifted, IGNORE_INDEX), g.constant(pad, "i64"), shifted))
    return g.build()
