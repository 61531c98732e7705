"""Linear (affine) layers.

Layout: a graph stores a linear weight as ``[in, out]`` and computes ``x @ w + b`` with one plain
``matmul``. Hugging Face checkpoints store ``nn.Linear`` weights as ``[out, in]``; the weight map
declares the transpose (``linear_rules``), so it happens once at load time and back at save time,
never per call. Measured on torch 2.13 CPU (x [8,128,768] @ 768->3072, 2 threads): ``x @ w[in,out]``
65.7 ms, ``F.linear(x, w[out,in])`` 72.9 ms, ``x @ w.t()`` 68.5 ms - the same within noise, so the
layout that needs no per-call transpose node anywhere wins: the NumPy reference would copy a
transposed weight on every call, JAX/ONNX take ``[in, out]`` as is (ONNX ``MatMul`` initializers
are ``[in, out]`` too). Embedding-shaped matrices (word embeddings, tied LM decoders) stay
``[vocab, dim]``; see :func:`isoform.layers.embedding.unembed`.
"""

from __future__ import annotations

from ..ir import Tensor
from ..weights import Rename, Rule, Transpose

#: Tensor-parallel layouts of a linear layer (Megatron-LM's): "column" splits the output features
#: over the "model" axis (q/k/v, up, gate; the bias split alike), "row" the input features (o, down:
#: each device holds a partial sum; the bias is replicated). Mesh backends lower them, see `Sharding`.
SHARDINGS = {"column": ((None, "model"), ("model",)), "row": (("model", None), None)}


def linear(x: Tensor, name: str, in_features: int, out_features: int, *, bias: bool = True,
           shard: str | None = None) -> Tensor:
    """``x @ <name>.weight + <name>.bias`` with the weight stored ``[in_features, out_features]``;
    ``shard``: ``"column"`` or ``"row"`` (`SHARDINGS`), None: replicated."""
    g = x.builder
    weight, bias_sharding = SHARDINGS[shard] if shard else (None, None)
    y = x @ g.param(f"{name}.weight", [in_features, out_features], sharding=weight)
    return y + g.param(f"{name}.bias", [out_features], sharding=bias_sharding) if bias else y


def linear_rules(*names: str, bias: bool = True, prefixed: bool = True) -> list[Rule]:
    """Weight-map rules of linear layers: HF ``[out, in]`` weight <-> graph ``[in, out]``; the
    bias as is. Names may hold template placeholders such as ``{i}``; ``prefixed=False`` for task
    heads, which sit outside the base-model prefix."""
    rules: list[Rule] = []
    for name in names:
        rules.append(Rename(f"{name}.weight", f"{name}.weight", Transpose(), prefixed=prefixed))
        if bias:
            rules.append(Rename(f"{name}.bias", f"{name}.bias", prefixed=prefixed))
    return rules
