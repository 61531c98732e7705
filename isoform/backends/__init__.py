"""Backend registry: built-in backends plus third-party ones from the `isoform.backends` entry-point group.

    isoform.backends.available()        # ['numpy', 'torch', 'jax', ...] usable on this machine
    isoform.backends.get("jax")         # the Backend object (imports JAX on first use)
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from importlib.metadata import entry_points

from ..environment import quiet_tensorflow
from ..errors import BackendError
from .base import Backend, Program

BUILTIN = {
    "numpy": ("isoform.backends.numpy_ref:backend", "numpy", None),
    "torch": ("isoform.backends.torch:backend", "torch", "torch"),
    "jax": ("isoform.backends.jax:backend", "jax", "jax"),
    "tensorflow": ("isoform.backends.tensorflow:backend", "tensorflow", "tensorflow"),
    "onnxruntime": ("isoform.backends.onnxruntime:backend", "onnxruntime", "onnx"),
}
#: Names people give backends: suggested in the error, never silently accepted.
SYNONYMS = {"pytorch": "torch", "pt": "torch", "tf": "tensorflow", "ort": "onnxruntime", "onnx": "onnxruntime",
            "np": "numpy", "flax": "jax"}
_loaded: dict[str, Backend] = {}


def _registered() -> dict[str, tuple[str, str | None, str | None]]:
    found = dict(BUILTIN)
    for ep in entry_points(group="isoform.backends"):
        if ep.name not in found:
            found[ep.name] = (ep.value, None, None)
    return found


def names() -> list[str]:
    """Every registered backend name, usable here or not."""
    return list(_registered())


def _missing_framework(name: str) -> str | None:
    _, framework, _ = _registered()[name]
    return framework if framework and importlib.util.find_spec(framework) is None else None


def available() -> list[str]:
    """Names of the backends whose framework is installed on this machine (frameworks are not imported)."""
    return [n for n in _registered() if _missing_framework(n) is None]


def unavailable() -> dict[str, str]:
    """Backends that cannot run here, each with the reason and the pip command that fixes it."""
    return {n: _why(n) for n in _registered() if _missing_framework(n) is not None}


def _why(name: str) -> str:
    _, framework, extra = _registered()[name]
    return f"backend {name!r} needs {framework}, which is not installed: pip install 'isoform[{extra}]'"


def get(name: str | Backend) -> Backend:
    """The Backend called `name`; BackendError if unknown or if its framework is missing."""
    if isinstance(name, Backend):
        return name
    if name in _loaded:
        return _loaded[name]
    registered = _registered()
    if name not in registered:
        raise BackendError(f"unknown backend {name!r}; registered backends: {', '.join(registered)}{_guess(name, registered)}")
    if _missing_framework(name):
        raise BackendError(_why(name))
    module, _, attr = registered[name][0].partition(":")
    if registered[name][1] == "tensorflow":
        quiet_tensorflow()
    try:
        backend = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise BackendError(f"backend {name!r} failed to import ({e}); reinstall with pip install 'isoform[all]'") from e
    if not isinstance(backend, Backend):
        raise BackendError(f"entry point for backend {name!r} ({module}:{attr}) is not an isoform Backend")
    _loaded[name] = backend
    return backend


def _guess(name: object, registered: dict[str, object]) -> str:
    """``"; did you mean 'torch'?"`` for a synonym or near miss of a registered name, else ``""``."""
    key = str(name).strip().lower()
    guesses = [SYNONYMS[key]] if SYNONYMS.get(key) in registered else difflib.get_close_matches(key, registered, n=2)
    return f"; did you mean {' or '.join(map(repr, guesses))}?" if guesses else ""


__all__ = ["SYNONYMS", "Backend", "Program", "available", "get", "names", "quiet_tensorflow", "unavailable"]
