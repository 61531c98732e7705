"""Exception types. Every error isoform raises on bad input is an ``IsoformError`` whose message
names the thing at fault (node, op, backend, tensor, key, file)."""


class IsoformError(Exception):
    """Base class of all isoform errors."""


class GraphError(IsoformError, ValueError):
    """An IR graph is malformed: unknown op, bad attribute, shape/dtype mismatch, corrupt JSON."""


class BackendError(IsoformError, RuntimeError):
    """A backend cannot run a graph: unknown backend, unsupported op, missing framework."""


class ConfigError(IsoformError, ValueError):
    """A model config is invalid or names an unsupported architecture or task."""


class WeightsError(IsoformError, ValueError):
    """A checkpoint cannot be loaded: missing/unexpected/mis-shaped tensors, corrupt or unsafe file."""


class HubError(IsoformError, OSError):
    """A name, alias or path cannot be resolved to files."""


class TokenizerError(IsoformError, ValueError):
    """Tokenizer files are missing or corrupt, or the tokenizer was called with bad arguments."""


class InputError(IsoformError, ValueError):
    """Inputs passed to a model or generate() are invalid (shape, range, dtype, length)."""
