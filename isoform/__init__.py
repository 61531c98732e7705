"""isoform: one definition per transformer architecture, run on PyTorch, JAX, TensorFlow, ONNX
Runtime and a NumPy reference.

    import isoform
    m = isoform.Model.load("bert-base", backend="jax")
    out = m(input_ids=ids, attention_mask=mask).numpy()

Importing isoform imports no framework; `Model` and `Tokenizer` load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import backends
from .errors import (
    BackendError,
    ConfigError,
    GraphError,
    HubError,
    InputError,
    IsoformError,
    TokenizerError,
    WeightsError,
)

if TYPE_CHECKING:
    from .comparison import compare, compare_with_transformers
    from .model import Model, ModelOutput
    from .pipelines import Pipeline, pipeline
    from .processing import FeatureExtractor, ImageProcessor, Processor
    from .tokenizer import Tokenizer

__version__ = "0.1.0"

_LAZY = {"compare": ".comparison", "compare_with_transformers": ".comparison", "FeatureExtractor": ".processing", "ImageProcessor": ".processing", "Processor": ".processing", "Model": ".model",
         "ModelOutput": ".model", "Pipeline": ".pipelines", "pipeline": ".pipelines", "Tokenizer": ".tokenizer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'isoform' has no attribute {name!r}")


__all__ = ["BackendError", "ConfigError", "FeatureExtractor", "GraphError", "HubError", "ImageProcessor", "InputError",
           "IsoformError", "Model", "ModelOutput", "Pipeline", "Processor", "Tokenizer", "TokenizerError", "WeightsError", "backends",
           "compare", "compare_with_transformers", "pipeline"]
