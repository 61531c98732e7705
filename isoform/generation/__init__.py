"""Text generation: `Decoder` runs a model's KV-cached decoding graphs incrementally on its backend
(static-size cache in the IR graph; the encoder of an encoder-decoder as an optional first stage),
and the search strategies drive it through the `IncrementalDecoder` protocol. Nothing here imports
`isoform.model`: a model hands its compiled graphs over as `DecodingGraphs`."""

from .config import GenerationConfig
from .decoder import Decoder, DecodingGraphs
from .outputs import GenerateOutput
from .search import IncrementalDecoder
from .streaming import TextStreamer

__all__ = ["Decoder", "DecodingGraphs", "GenerateOutput", "GenerationConfig", "IncrementalDecoder", "TextStreamer"]
