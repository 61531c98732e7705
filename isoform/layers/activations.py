"""Activation functions by their Hugging Face ``hidden_act`` names (``transformers.activations.ACT2FN``).

Each maps a Tensor to a Tensor with IR ops, in the formula transformers uses, so results agree to
float rounding: ``gelu`` is the exact (erf) GELU; ``gelu_new``, ``gelu_pytorch_tanh``,
``gelu_accurate`` and ``gelu_python_tanh`` are the tanh approximation; ``gelu_fast`` is the same
approximation written as ``tanh(0.7978845608 * x * (1 + 0.044715 x^2))``; ``quick_gelu`` is
``x * sigmoid(1.702 x)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..errors import ConfigError
from ..ir import Tensor, fn


def _relu(x: Tensor) -> Tensor:
    return fn.maximum(x, x.builder.constant(0.0, x.dtype))


def _clip(x: Tensor, lo: float, hi: float) -> Tensor:
    g = x.builder
    return fn.minimum(fn.maximum(x, g.constant(lo, x.dtype)), g.constant(hi, x.dtype))


def _softplus(x: Tensor) -> Tensor:  # max(x, 0) + log(1 + exp(-|x|)), stable for large |x|
    return _relu(x) + fn.log(1.0 + fn.exp(-fn.abs(x)))


def _gelu_fast(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + fn.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _laplace(x: Tensor, mu: float = 0.707107, sigma: float = 0.282095) -> Tensor:
    return 0.5 * (1.0 + fn.erf((x - mu) / (sigma * math.sqrt(2.0))))


def _leaky_relu(x: Tensor) -> Tensor:
    return fn.where(fn.ge(x, x.builder.constant(0.0, x.dtype)), x, x * 0.01)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": lambda x: fn.gelu(x),
    "gelu_python": lambda x: fn.gelu(x),
    "gelu_new": lambda x: fn.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: fn.gelu(x, approximate="tanh"),
    "gelu_python_tanh": lambda x: fn.gelu(x, approximate="tanh"),
    "gelu_accurate": lambda x: fn.gelu(x, approximate="tanh"),
    "gelu_fast": _gelu_fast,
    "gelu_10": lambda x: _clip(fn.gelu(x), -10.0, 10.0),
    "quick_gelu": lambda x: x * fn.sigmoid(1.702 * x),
    "relu": _relu,
    "relu2": lambda x: _relu(x) * _relu(x),
    "relu6": lambda x: _clip(x, 0.0, 6.0),
    "leaky_relu": _leaky_relu,
    "hardswish": lambda x: x * _clip(x + 3.0, 0.0, 6.0) / 6.0,
    "silu": lambda x: fn.silu(x),
    "swish": lambda x: fn.silu(x),
    "sigmoid": lambda x: fn.sigmoid(x),
    "tanh": lambda x: fn.tanh(x),
    "mish": lambda x: x * fn.tanh(_softplus(x)),
    "laplace": _laplace,
    "linear": lambda x: x,
}


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation called ``name`` (a ``hidden_act`` value); ConfigError listing the known ones."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown activation {name!r}; supported: {', '.join(sorted(ACTIVATIONS))}") from None
