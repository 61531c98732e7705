"""Text generation: `Decoder` runs a causal LM incrementally on its backend with a static-size KV
cache kept in the IR graph (one prefill graph, one step graph); the search strategies drive it."""

from .config import GenerationConfig
from .decoder import Decoder
from .streaming import TextStreamer

__all__ = ["Decoder", "GenerationConfig", "TextStreamer"]
