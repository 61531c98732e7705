"""Architectures by ``model_type``: ``get("bert")`` gives the `Architecture` class for a config.

Each family is one module defining its config, graph, heads and weight map; it registers its
class with ``@register`` when imported below. Modules import no framework (NumPy and pydantic only).
"""

from . import albert, bert, distilbert, electra, mpnet, roberta  # noqa: F401  (each registers its architectures)
from .base import REGISTRY, TASKS, ArchConfig, Architecture, get, parse_config, register, supported

__all__ = ["REGISTRY", "TASKS", "ArchConfig", "Architecture", "get", "parse_config", "register", "supported"]
