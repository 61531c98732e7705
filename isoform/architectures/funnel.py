"""Funnel Transformer (Dai et al., 2020): an encoder of ``block_sizes`` blocks; before every block
but the first the sequence is pooled by 2 (mean or max over adjacent tokens, ``<cls>`` kept apart
with ``separate_cls``, the last token dropped with ``truncate_seq``), and that block's first layer
attends from the pooled queries to the unpooled keys (``pool_q_only``). Attention is Transformer-XL
style, with no position embeddings: a content term with ``r_w_bias``, a relative-position term with
``r_r_bias`` and ``r_kernel`` over sinusoids of the query-key distance (``attention_type``
"relative_shift": the distance table and transformers' relative-shift reshape; "factorized": the
sin/cos products of absolute positions, paper appendix A.2), and a token-type term with
``r_s_bias`` and ``seg_embed`` (same segment or not; token type 2, ``<cls>``, is in every segment);
each layer is post-LN attention then a post-LN feed-forward. ``FunnelModel`` adds a decoder:
the last block's output is repeated back to full length, added to the output of the first
``block_sizes[0]`` layers, and run through ``num_decoder_layers`` more layers.

Tasks: None is ``FunnelModel`` (encoder + decoder, full-length ``last_hidden_state``); ``"encoder"``
is ``FunnelBaseModel`` (the encoder alone, ``last_hidden_state`` of the pooled length). As
transformers, ``sequence-classification`` and ``multiple-choice`` sit on ``FunnelBaseModel``
(``<cls>`` through ``linear_hidden``, tanh, ``linear_out``), ``masked-lm``, ``token-classification``,
``question-answering`` and ``pretraining`` (``FunnelForPreTraining``, ELECTRA's replaced-token
discriminator) on ``FunnelModel``. A task-less load of a checkpoint whose config names
``FunnelBaseModel``, or that has no decoder weights (a classifier's), gives ``FunnelBaseModel``, as
``AutoModel`` does.

The positions are computed in the graph from the symbolic sequence length (iota, sin, cos), so one
graph serves every length. Not covered, InputError naming the length: short sequences transformers
cannot run either (its relative distances leave its ``[-2 seq, 2 seq)`` table: under 5 tokens with
3 blocks, under 9 with 4), and, with factorized attention, the short ones it runs only by leaving a
block of ``<cls>`` plus one token unpooled (a graph pools at fixed points). Nor is
``output_attentions=True`` (refused: the relative attention is a softmax of its own, not an ``attention``
node the tap rewrite can recompute); ``output_hidden_states`` gives transformers' tuple, pooled lengths
included. Padding changes which tokens pool together, so inputs are never padded to a compile bucket.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from ..errors import InputError
from ..ir import Graph, Tensor, fn
from ..ir import dims as D
from ..ir.dtypes import DType
from ..layers import activation, embedding, feed_forward, layer_norm, linear, linear_rules
from ..weights import Rule
from .base import ArchConfig, known_activation, norm_rules, register, same
from .bert import Bert, squeeze_last
from .inputs import Inputs, InputSpec, attention_mask, token_ids, zeros_like

INF = 1e6  # transformers subtracts INF * (1 - mask) from the scores
CLS_TYPE = 2  # the token type of <cls>: the same segment as every token


class FunnelConfig(ArchConfig):
    """`transformers.FunnelConfig` keys isoform reads; all others are kept."""

    vocab_size: PositiveInt = 30522
    block_sizes: list[PositiveInt] = [4, 4, 4]
    block_repeats: list[PositiveInt] | None = None
    num_decoder_layers: NonNegativeInt = 2
    d_model: PositiveInt = 768
    n_head: PositiveInt = 12
    d_head: PositiveInt = 64
    d_inner: PositiveInt = 3072
    hidden_act: str = "gelu_new"
    layer_norm_eps: PositiveFloat = 1e-9
    pooling_type: Literal["mean", "max"] = "mean"
    attention_type: Literal["relative_shift", "factorized"] = "relative_shift"
    separate_cls: bool = True
    truncate_seq: bool = True
    pool_q_only: bool = True
    pad_token_id: NonNegativeInt | None = None

    @field_validator("hidden_act")
    @classmethod
    def _known_activation(cls, v: str) -> str | None:
        return known_activation(v)

    @model_validator(mode="after")
    def _consistent(self) -> FunnelConfig:
        if not self.block_sizes:
            raise ValueError("block_sizes must name at least one block")
        if self.block_repeats is not None and len(self.block_repeats) != len(self.block_sizes):
            raise ValueError(f"block_repeats ({self.block_repeats}) must have one entry per block of "
                             f"block_sizes ({self.block_sizes})")
        if self.d_model % 2:
            raise ValueError(f"d_model ({self.d_model}) must be even: positions are [sin, cos] halves")
        if self.pad_token_id is not None and self.pad_token_id >= self.vocab_size:
            raise ValueError(f"pad_token_id ({self.pad_token_id}) must be < vocab_size ({self.vocab_size})")
        return self

    @property
    def hidden_size(self) -> int:  # transformers' attribute_map alias
        return self.d_model

    @property
    def repeats(self) -> list[int]:
        return self.block_repeats or [1] * len(self.block_sizes)


@dataclass(frozen=True)
class AttentionInputs:
    """transformers' ``attention_inputs`` at one layer: ``types`` [batch, q, k] (same segment),
    ``mask`` [batch, k] (float 0/1) and, for factorized attention, ``position`` = (phi, pi) over the
    queries and (psi, omega) over the keys, each [len, d_model]."""

    types: Tensor
    mask: Tensor
    position: tuple[Tensor, ...] = ()


@register
class Funnel(Bert):
    model_type = "funnel"
    Config = FunnelConfig
    prefix = "funnel."
    tasks = {None: "FunnelModel", "encoder": "FunnelBaseModel", "masked-lm": "FunnelForMaskedLM",
             "sequence-classification": "FunnelForSequenceClassification",
             "token-classification": "FunnelForTokenClassification",
             "question-answering": "FunnelForQuestionAnswering", "multiple-choice": "FunnelForMultipleChoice",
             "pretraining": "FunnelForPreTraining"}
    head_patterns = (r"^lm_head\.", r"^classifier\.", r"^qa_outputs\.", r"^discriminator_predictions\.", r"^decoder\.")
    pooler_param = None
    padding_safe = False
    decoder = "lm_head"
    decoder_bias = "lm_head.bias"
    base_checkpoint = False  # task None loads FunnelBaseModel (set by `resolve`)
    with_decoder = True  # the graph being built has the decoder (set by `build`)
    config: FunnelConfig

    @property
    def embedding_dim(self) -> int:
        return self.config.d_model

    @property
    def max_length(self) -> None:
        return None  # no position table

    @property
    def uses_token_types(self) -> bool:
        return True

    def uses_decoder(self, task: str | None) -> bool:
        """Whether the task's transformers class is built on FunnelModel (else FunnelBaseModel)."""
        if task is None:
            return not self.base_checkpoint
        return task not in ("encoder", "sequence-classification", "multiple-choice")

    def resolve(self, keys: Collection[str]) -> None:
        super().resolve(keys)
        named = "FunnelBaseModel" in (self.config.extra("architectures") or [])
        no_decoder = self.config.num_decoder_layers > 0 and not any(re.match(r"(funnel\.)?decoder\.", k) for k in keys)
        self.base_checkpoint = named or no_decoder
        if self.base_checkpoint:
            self.tasks = {**self.tasks, None: "FunnelBaseModel"}

    def input_specs(self, task: str | None) -> Inputs:
        dims = ("batch", "choices", "seq") if task == "multiple-choice" else ("batch", "seq")
        return Inputs([token_ids("input_ids", dims, self.config.vocab_size, self.pad_id),
                       attention_mask(dims, "input_ids"),
                       # any integers: token types are only compared (2 is <cls>), never looked up
                       InputSpec("token_type_ids", dims, default=zeros_like("input_ids"))])

    def check_inputs(self, inputs: Mapping[str, np.ndarray], task: str | None) -> None:
        problem = self.length_problem(int(inputs["input_ids"].shape[-1]))
        if problem:
            raise InputError(problem)

    def length_problem(self, seq: int) -> str | None:
        """Why a sequence of ``seq`` tokens cannot run (see the module doc), or None."""
        c, n = self.config, seq
        for b in range(1, len(c.block_sizes)):
            if c.separate_cls and n == 2:  # pooling one token is the identity; transformers skips pooling two
                return (f"a sequence of {seq} tokens is too short for this Funnel Transformer: it reaches block {b} "
                        "as <cls> and one token, which transformers leaves unpooled while isoform's graph pools "
                        "before every block; pass longer sequences")
            n = (n + (1 if c.separate_cls and not c.truncate_seq else 0) + 1) // 2
        if c.attention_type == "relative_shift":
            for block, stride, pos, pooled, shift in self._relative_positions(seq):
                first = pooled[0] - pos[0] + shift * len(pooled) * stride
                last = first - (len(range(first, pooled[0] - pos[-1] - 1, -stride)) - 1) * stride
                if not -2 * seq <= last <= first < 2 * seq:
                    return (f"a sequence of {seq} tokens cannot run on this Funnel Transformer: block {block}'s "
                            f"relative distances reach {first if first >= 2 * seq else last}, outside the table of "
                            f"[-{2 * seq}, {2 * seq}) transformers builds for it (transformers raises an IndexError)")
        return None

    def _relative_positions(self, seq: int) -> Iterator[tuple[int, int, list[int], list[int], int]]:
        """transformers' ``get_position_embeds`` position lists: (block, stride, pos, pooled_pos, shift)."""
        c, pos = self.config, list(range(seq))
        for b in range(len(c.block_sizes)):
            if b:
                pooled = ([1 - 2**b] + (pos[1:-1] if c.truncate_seq else pos[1:])[::2]) if c.separate_cls else pos[::2]
                yield b, 2 ** (b - 1), pos, pooled, 2
                pos = pooled
            yield b, 2**b, pos, pos, 1

    # -- graph ----------------------------------------------------------------------------------
    def build(self, task: str | None = None, dtype: DType | str = "float32") -> Graph:
        self.with_decoder = self.uses_decoder(task)  # read by `backbone`, which the base build calls without the task
        return super().build(task, dtype)

    def backbone(self, ids: Tensor, mask: Tensor, token_types: Tensor | None, *, pooler: bool) -> dict[str, Tensor]:
        c = self.config
        x = layer_norm(embedding(ids, "embeddings.word_embeddings", c.vocab_size, c.d_model), "embeddings.layer_norm",
                       c.d_model, c.layer_norm_eps)
        start = self.attention_inputs(x, mask, token_types)
        last, first = self.encoder(x.builder.tap("hidden_states", x), start)
        if not self.with_decoder:
            return {"last_hidden_state": last}
        x = x.builder.tap("hidden_states", self.upsample(last, x.shape[1]) + first)
        for i in range(c.num_decoder_layers):
            x = x.builder.tap("hidden_states", self.layer(x, x, start, f"decoder.layers.{i}", block=0))
        return {"last_hidden_state": x}

    def attention_inputs(self, x: Tensor, mask: Tensor, token_types: Tensor) -> AttentionInputs:
        """transformers' ``init_attention_inputs``: segment matrix, float mask, factorized positions."""
        g, seq = x.builder, x.shape[1]
        cls = fn.eq(token_types, g.constant(CLS_TYPE, token_types.dtype))
        same_type = fn.eq(token_types.reshape(-1, seq, 1), token_types.reshape(-1, 1, seq))
        types = fn.logical_or(same_type, fn.logical_or(cls.reshape(-1, seq, 1), cls.reshape(-1, 1, seq)))
        position: tuple[Tensor, ...] = ()
        if self.config.attention_type == "factorized":
            angles = self.angles(g.add("iota", shape=[seq], axis=0, dtype="f32"))
            sin, cos = (f(angles).cast(x.dtype) for f in (fn.sin, fn.cos))
            # (phi, pi, psi, omega) of the paper's appendix A.2.2, as transformers builds them
            position = tuple(fn.concat(a, b, axis=-1) for a, b in ((sin, sin), (cos, cos), (cos, sin), (-sin, cos)))
        return AttentionInputs(types, mask.cast("f32"), position)

    def angles(self, positions: Tensor) -> Tensor:
        """``positions[:, None] * inv_freq`` [len, d_model // 2] in float32, transformers' sinusoid."""
        half = self.config.d_model // 2
        inv_freq = np.float32(1) / np.power(np.float32(10000), np.arange(half, dtype=np.float32) / np.float32(half))
        return positions.reshape(positions.shape[0], 1) * positions.builder.constant(inv_freq.tolist(), "f32")

    def encoder(self, x: Tensor, state: AttentionInputs) -> tuple[Tensor, Tensor]:
        """The blocks; returns the last output and transformers' ``hidden_states[block_sizes[0]]``
        (the output of the first ``block_sizes[0]`` layer applications, repeats counted)."""
        c, first, applied = self.config, x, 0
        for b, (size, repeats) in enumerate(zip(c.block_sizes, c.repeats)):
            pooled = None
            if b:
                pooled, state = self.pool(x), self.pre_attention_pooling(state)
            for j in range(size):
                for r in range(repeats):
                    if pooled is not None and j == r == 0:
                        x = self.layer(pooled, x if c.pool_q_only else pooled, state, f"encoder.blocks.{b}.{j}", block=b)
                        state = self.post_attention_pooling(state)
                    else:
                        x = self.layer(x, x, state, f"encoder.blocks.{b}.{j}", block=b)
                    x.builder.tap("hidden_states", x)
                    applied += 1
                    if applied == c.block_sizes[0]:
                        first = x
        return x, first

    # -- pooling (transformers' FunnelAttentionStructure) ---------------------------------------
    def stride_pool(self, x: Tensor, axis: int) -> Tensor:
        """Every other position along ``axis`` (``<cls>`` kept first with ``separate_cls``)."""
        c = self.config
        if c.separate_cls:
            x = fn.concat(_along(x, axis, slice(0, 1)), x, axis=axis)
        return _along(x, axis, slice(None, -1, 2) if c.separate_cls and c.truncate_seq else slice(None, None, 2))

    def pool(self, x: Tensor, mode: str | None = None) -> Tensor:
        """transformers' ``pool_tensor`` along axis 1: pairs of tokens pooled (``mode``: mean, max or
        min; default ``pooling_type``), a lone last one kept as is (``ceil_mode``)."""
        c, mode = self.config, mode or self.config.pooling_type
        if c.separate_cls:
            x = fn.concat(x[:, :1], x[:, :-1] if c.truncate_seq else x, axis=1)
        x = fn.concat(x, x[:, -1:], axis=1)  # the last token twice: an odd length's lone token pools to itself
        even, odd = x[:, :-1:2], x[:, 1::2]
        if mode == "mean":
            return (even + odd) * 0.5
        return fn.maximum(even, odd) if mode == "max" else fn.minimum(even, odd)

    def pre_attention_pooling(self, state: AttentionInputs) -> AttentionInputs:
        if self.config.pool_q_only:
            phi_pi = tuple(self.stride_pool(p, 0) for p in state.position[:2])
            return replace(state, types=self.stride_pool(state.types, 1), position=phi_pi + state.position[2:])
        return AttentionInputs(self.stride_pool(self.stride_pool(state.types, 1), 2), self.pool(state.mask, "min"),
                               tuple(self.stride_pool(p, 0) for p in state.position))

    def post_attention_pooling(self, state: AttentionInputs) -> AttentionInputs:
        if not self.config.pool_q_only:
            return state
        psi_omega = tuple(self.stride_pool(p, 0) for p in state.position[2:])
        return AttentionInputs(self.stride_pool(state.types, 2), self.pool(state.mask, "min"),
                               state.position[:2] + psi_omega)

    def upsample(self, x: Tensor, length: D.Dim) -> Tensor:
        """transformers' ``upsample``: each pooled token repeated ``2 ** (blocks - 1)`` times up to
        ``length`` (``<cls>`` kept first with ``separate_cls``; the tokens ``truncate_seq`` dropped
        get zeros)."""
        c, stride = self.config, 2 ** (len(self.config.block_sizes) - 1)
        if stride == 1:
            return x
        cls = None
        if c.separate_cls:
            cls, x, length = x[:, :1], x[:, 1:], D.sub(length, 1)
        x = fn.pad(x, pads=[[0, 0], [0, 1], [0, 0]], value=0.0)  # the zeros, at the one index past the end
        at = fn.floor(x.builder.add("iota", shape=[length], axis=0, dtype="f32") * (1.0 / stride)).cast("i64")
        x = fn.gather(x, at, axis=1)
        return x if cls is None else fn.concat(cls, x, axis=1)

    # -- attention ------------------------------------------------------------------------------
    def layer(self, query: Tensor, kv: Tensor, state: AttentionInputs, name: str, block: int) -> Tensor:
        """FunnelLayer: relative multi-head attention of ``query`` over ``kv``, residual + LN, then
        the post-LN feed-forward. ``block`` picks the relative distances' stride."""
        c, g = self.config, query.builder
        n, h, dim, att = c.n_head, c.d_head, c.d_model, f"{name}.attention"
        batch, s, k = query.shape[0], query.shape[1], kv.shape[1]
        scale = 1.0 / math.sqrt(h)

        def heads(t: Tensor) -> Tensor:  # [batch, len, n, h] -> [batch, n, len, h]
            return t.transpose(0, 2, 1, 3)

        def bias(p: str) -> Tensor:
            return g.param(f"{att}.{p}", [n, h]) * scale

        q = linear(query, f"{att}.q_head", dim, n * h, bias=False).reshape(batch, s, n, h) * scale
        keys = linear(kv, f"{att}.k_head", dim, n * h).reshape(batch, k, n, h)
        values = linear(kv, f"{att}.v_head", dim, n * h).reshape(batch, k, n, h)
        content = heads(q + bias("r_w_bias")) @ keys.transpose(0, 2, 3, 1)
        position = self.positional_attention(heads(q + bias("r_r_bias")), g.param(f"{att}.r_kernel", [dim, n, h]),
                                             state, block, k)
        seg = heads(q + bias("r_s_bias")) @ per_head(g.param(f"{att}.seg_embed", [2, n, h]))
        types = fn.where(state.types.reshape(batch, 1, s, k), seg[..., 1:], seg[..., :1])
        if c.separate_cls:  # no position or segment term to or from <cls>
            keep = fn.logical_and(fn.ne(g.add("iota", shape=[s, 1], axis=0, dtype="i64"), g.constant(0, "i64")),
                                  fn.ne(g.add("iota", shape=[1, k], axis=1, dtype="i64"), g.constant(0, "i64")))
            keep = keep.cast(query.dtype)
            position, types = position * keep, types * keep
        score = (content + position + types).cast("f32") - INF * (1.0 - state.mask.reshape(batch, 1, 1, k))
        probs = fn.softmax(score, axis=-1).cast(query.dtype)
        out = (probs @ heads(values)).transpose(0, 2, 1, 3).reshape(batch, s, n * h)
        x = layer_norm(query + linear(out, f"{att}.post_proj", n * h, dim), f"{att}.layer_norm", dim, c.layer_norm_eps)
        up = feed_forward(x, f"{name}.ffn.linear_1", f"{name}.ffn.linear_2", dim, c.d_inner, c.hidden_act)
        return layer_norm(x + up, f"{name}.ffn.layer_norm", dim, c.layer_norm_eps)

    def positional_attention(self, q: Tensor, kernel: Tensor, state: AttentionInputs, block: int, k: D.Dim) -> Tensor:
        """Relative-position scores [batch, n, q, k] from ``q`` [batch, n, q, h] (+ r_r_bias)."""
        c, s = self.config, q.shape[2]
        if c.attention_type == "factorized":
            phi, pi, psi, omega = state.position
            qr = q @ per_head(kernel)  # [batch, n, q, d_model]
            return (qr * phi) @ psi.transpose(1, 0) + (qr * pi) @ omega.transpose(1, 0)
        shift = 1 if s == k else 2  # as transformers: 2 where pooled queries attend unpooled keys
        r = self.distance_table(q, block, shift, k)
        r_head = (r @ kernel.reshape(c.d_model, c.n_head * c.d_head)).reshape(r.shape[0], c.n_head, c.d_head)
        return relative_shift_gather(q @ per_head(r_head), k, shift)

    def distance_table(self, q: Tensor, block: int, shift: int, k: D.Dim) -> Tensor:
        """transformers' ``position_embeds[block][shift - 1]``: [sin, cos] of the relative distances
        from ``max_dist`` down by ``stride``, one row per column of the scores before the shift."""
        g, s = q.builder, q.shape[2]
        stride = 2**block // shift
        # first pooled position minus first key position: <cls> sits at 1 - 2**block (see stride_pool_pos)
        ref = -stride if shift == 2 and self.config.separate_cls else 0
        queries = g.add("iota", shape=[s], axis=0, dtype="f32")[-1:] + 1.0  # the query count, as a [1] tensor
        rows = g.add("iota", shape=[D.add(k, D.mul(shift, s))], axis=0, dtype="f32")
        angles = self.angles((queries * float(2**block) + float(ref)) - rows * float(stride))
        return fn.concat(fn.sin(angles), fn.cos(angles), axis=-1).cast(q.dtype)

    # -- heads ----------------------------------------------------------------------------------
    def head_encoder(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        return states

    def head_masked_lm(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"logits": self.lm_decoder(states["last_hidden_state"])}

    def head_pretraining(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c, name = self.config, "discriminator_predictions"
        x = activation(c.hidden_act)(linear(states["last_hidden_state"], f"{name}.dense", c.d_model, c.d_model))
        return {"logits": squeeze_last(linear(x, f"{name}.dense_prediction", c.d_model, 1))}

    def classify(self, states: dict[str, Tensor], labels: int) -> Tensor:
        """FunnelClassificationHead on ``<cls>``: linear_out(tanh(linear_hidden(x[:, 0])))."""
        dim = self.config.d_model
        x = fn.tanh(linear(states["last_hidden_state"][:, 0], "classifier.linear_hidden", dim, dim))
        return linear(x, "classifier.linear_out", dim, labels)

    def head_sequence_classification(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"logits": self.classify(states, self.config.num_labels)}

    def head_multiple_choice(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"logits": self.classify(states, 1)}

    # -- weights --------------------------------------------------------------------------------
    def backbone_rules(self, task: str | None = None) -> list[Rule]:
        layers = ["encoder.blocks.{b}.{j}", *(["decoder.layers.{i}"] if self.uses_decoder(task) else [])]
        return [*same("embeddings.word_embeddings.weight"), *norm_rules("embeddings.layer_norm"),
                *(rule for name in layers for rule in layer_rules(name))]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "masked-lm":
            return self.decoder_rules()
        if task == "pretraining":
            return linear_rules("discriminator_predictions.dense", "discriminator_predictions.dense_prediction",
                                prefixed=False)
        if task in ("sequence-classification", "multiple-choice"):
            return linear_rules("classifier.linear_hidden", "classifier.linear_out", prefixed=False)
        return super().head_rules(None if task == "encoder" else task)

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        return [*self.backbone_rules(task), *self.head_rules(task)]


def layer_rules(name: str) -> list[Rule]:
    """One FunnelLayer's tensors (``name``: its module path, with placeholders)."""
    att = f"{name}.attention"
    return [*linear_rules(f"{att}.q_head", bias=False),
            *linear_rules(f"{att}.k_head", f"{att}.v_head", f"{att}.post_proj", f"{name}.ffn.linear_1",
                          f"{name}.ffn.linear_2"),
            *same(*(f"{att}.{p}" for p in ("r_w_bias", "r_r_bias", "r_kernel", "r_s_bias", "seg_embed"))),
            *norm_rules(f"{att}.layer_norm", f"{name}.ffn.layer_norm")]


def relative_shift_gather(scores: Tensor, context: D.Dim, shift: int) -> Tensor:
    """transformers' ``_relative_shift_gather``: scores [batch, n, q, rows] against the distance
    table become [batch, n, q, context], column j of query i reading row ``shift * (q - i) + j``
    (the distance from query i to key j), by the reshape-and-drop trick."""
    b, n, q, rows = scores.shape
    x = scores.reshape(b, n, rows, q)[:, :, shift:].reshape(b, n, q, D.sub(rows, shift))
    zero = scores.builder.constant(0, "i64")
    return fn.dynamic_slice(x, zero, zero, zero, zero, sizes=[b, n, q, context])


def per_head(x: Tensor) -> Tensor:
    """[m, n, h] -> [1, n, h, m], the right operand of a per-head product with [batch, n, q, h]. Rank 4:
    ONNX Runtime 1.32 crashes (float16, all optimizations) on a transposed rank-3 operand broadcast there."""
    m, n, h = x.shape
    return x.transpose(1, 2, 0).reshape(1, n, h, m)


def _along(x: Tensor, axis: int, index: slice) -> Tensor:
    return x[(slice(None),) * axis + (index,)]
