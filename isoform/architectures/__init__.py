"""Architectures by ``model_type``: ``get("bert")`` gives the `Architecture` class for a config.

Each family is one module defining its config, graph, heads and weight map; it registers its
class with ``@register`` when imported below. Modules import no framework (NumPy and pydantic only).
"""

from . import (  # noqa: F401  (each registers its architectures)
    albert,
    bart,
    bert,
    blenderbot,
    clip,
    convbert,
    deberta,
    deberta_v2,
    distilbert,
    electra,
    funnel,
    gpt,
    gpt2,
    gpt_neo,
    ibert,
    layoutlm,
    llama,
    m2m_100,
    marian,
    megatron_bert,
    mobilebert,
    mpnet,
    pegasus,
    roberta,
    roformer,
    speech_to_text,
    squeezebert,
    t5,
    vit,
    wav2vec2,
)
from .base import (
    REGISTRY,
    TASKS,
    ArchConfig,
    Architecture,
    architecture_for,
    get,
    parse_config,
    read_config,
    register,
    supported,
)
from .inputs import FLOAT, Inputs, InputSpec, Limit

__all__ = ["FLOAT", "REGISTRY", "TASKS", "ArchConfig", "Architecture", "InputSpec", "Inputs", "Limit",
           "architecture_for", "get", "parse_config", "read_config", "register", "supported"]
