"""The conformance suite on every registered backend, one test per (backend, op)."""

from __future__ import annotations

import numpy as np
import pytest

from isoform import backends
from isoform.backends.numpy_ref import NumpyBackend
from isoform.errors import BackendError
from isoform.ir import all_ops
from isoform.testing.cases import all_cases
from isoform.testing.conformance import compare, run_conformance

OPS = sorted(all_ops())


def _backend(name: str):
    try:
        return backends.get(name)
    except BackendError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend_name", backends.names())
def test_op_conforms(backend_name: str, op: str) -> None:
    failures = run_conformance(_backend(backend_name), ops=[op])
    assert not failures, "\n".join(map(str, failures))


def test_every_op_has_cases() -> None:
    assert {c.op for c in all_cases()} == set(OPS)


def test_a_wrong_lowering_is_caught() -> None:
    broken = NumpyBackend()
    broken.name = "broken"
    broken.lowerings["exp"] = lambda x: np.exp2(x)
    broken.lowerings["top_k"] = lambda x, *, k: tuple(reversed(all_ops()["top_k"].reference(x, k=k)))
    del broken.lowerings["layer_norm"]  # falls back to its decomposition, which must still conform
    failures = run_conformance(broken, ops=["exp", "top_k", "layer_norm"])
    assert {f.case.split("(")[0] for f in failures} == {"exp", "top_k"}
    assert all("broken" in str(f) for f in failures)


def test_compare_checks_dtype_shape_and_specials() -> None:
    a = np.array([1.0, np.inf, np.nan], np.float32)
    assert compare(a, a.copy()) is None
    assert "dtype" in compare(a, a.astype(np.float16))
    assert "shape" in compare(a, a[:2])
    assert "inf/nan" in compare(a, np.array([1.0, 1.0, np.nan], np.float32))
    assert "exceeds" in compare(a, np.array([1.1, np.inf, np.nan], np.float32))
    assert "differ" in compare(np.array([1, 2]), np.array([1, 3]))
