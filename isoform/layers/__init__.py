"""Abstract layers shared by architectures: plain functions that add ops to a graph.

Each function takes IR `Tensor`s and the *name* of the module it stands for (a Hugging Face
module path without the model prefix, e.g. ``"encoder.layer.0.attention.self.query"``); the
parameters it declares are ``<name>.weight``/``<name>.bias`` and friends, so an architecture's
weight map is mostly the identity. No framework is imported here.
"""

from .activations import ACTIVATIONS, activation
from .attention import attention_mask, merge_heads, multi_head_attention, split_heads
from .dropout import dropout
from .embedding import embedding, unembed
from .feed_forward import feed_forward
from .linear import linear, linear_rules
from .norm import layer_norm
from .pooling import first_token, mean_pool, tanh_pooler

__all__ = [
    "ACTIVATIONS",
    "activation",
    "attention_mask",
    "dropout",
    "embedding",
    "feed_forward",
    "first_token",
    "layer_norm",
    "linear",
    "linear_rules",
    "mean_pool",
    "merge_heads",
    "multi_head_attention",
    "split_heads",
    "tanh_pooler",
    "unembed",
]
