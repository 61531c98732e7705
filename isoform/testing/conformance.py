"""Backend conformance suite: every registered op, run on a backend, against the NumPy reference.

    from isoform.testing.conformance import run_conformance
    failures = run_conformance("mybackend")      # [] when the backend conforms
    assert not failures, "\\n".join(map(str, failures))

Each case (see `cases.py`) builds a one-op graph, compiles it on the backend, runs it, and compares
every output with the reference: same shape, same dtype kind (and width, for floats), values within
the dtype's tolerance, infinities and NaNs in the same places. Composite ops run twice: as the
backend lowers them, and fully decomposed into primitives. An op with no case is a failure too, so
a new op cannot skip conformance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .. import backends
from ..backends import Backend
from ..errors import IsoformError
from ..ir import GraphBuilder, all_ops, as_dtype, decompose
from .cases import Case, all_cases

#: (atol, rtol) per output dtype; integer and bool outputs must match exactly.
TOLERANCES = {"float32": (2e-5, 2e-5), "float16": (1e-2, 1e-2), "bfloat16": (5e-2, 3e-2)}


@dataclass
class Failure:
    """A case that did not conform: which backend, case and variant, and what went wrong."""

    backend: str
    case: str
    variant: str
    message: str

    def __str__(self) -> str:
        return f"[{self.backend}] {self.case} ({self.variant}): {self.message}"


def build_graph(case: Case):
    """The one-op graph of a case, with its inputs named x0, x1, ... and outputs y0, y1, ..."""
    g = GraphBuilder(f"conformance_{case.op}")
    args = []
    for i, x in enumerate(case.inputs + case.extra):
        if x is None:
            args.append(None)
            continue
        sym = case.symbolic.get(i, {})
        shape = [sym.get(axis, d) for axis, d in enumerate(x.shape)]
        args.append(g.input(f"x{i}", shape, as_dtype(x.dtype)))
    out = g.add(case.op, *args[:len(case.inputs)], **case.attrs)
    outs = out if isinstance(out, tuple) else (out,)
    for k, o in enumerate(outs):
        g.output(f"y{k}", o)
    return g.build()


def compare(expected: np.ndarray, got: np.ndarray) -> str | None:
    """None if `got` conforms to `expected`, else what differs."""
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    if got.dtype.kind != expected.dtype.kind or (expected.dtype.kind == "f" and got.dtype != expected.dtype) \
            or (expected.dtype.kind == "V" and got.dtype != expected.dtype):
        return f"dtype {got.dtype}, expected {expected.dtype}"
    tol = TOLERANCES.get(expected.dtype.name)
    if tol is None:
        if not np.array_equal(got, expected):
            bad = np.argwhere(got != expected)[:3].tolist()
            return f"values differ at {bad}: got {got[tuple(np.array(bad).T)]} expected {expected[tuple(np.array(bad).T)]}"
        return None
    with np.errstate(all="ignore"):
        g64, e64 = got.astype(np.float64), expected.astype(np.float64)
    same_special = np.array_equal(np.isnan(g64), np.isnan(e64)) and np.array_equal(np.isposinf(g64), np.isposinf(e64)) \
        and np.array_equal(np.isneginf(g64), np.isneginf(e64))
    if not same_special:
        return f"inf/nan positions differ: got {got.ravel()[:8]}, expected {expected.ravel()[:8]}"
    finite = np.isfinite(e64)
    atol, rtol = tol
    with np.errstate(all="ignore"):
        err = np.abs(g64 - e64)[finite]
    limit = (atol + rtol * np.abs(e64))[finite]
    if err.size and (err > limit).any():
        i = int(np.argmax(err - limit))
        return f"max abs diff {err.max():.3g} exceeds tolerance (atol={atol}, rtol={rtol}); worst got {g64[finite][i]} expected {e64[finite][i]}"
    return None


def _run(backend: Backend, graph, case: Case) -> dict[str, np.ndarray]:
    inputs = {f"x{i}": x for i, x in enumerate(case.inputs + case.extra) if x is not None}
    program = backend.compile(graph, {})
    with np.errstate(all="ignore"):
        return {k: backend.to_numpy(v) for k, v in program(**inputs).items()}


def check_case(backend: Backend, case: Case) -> list[Failure]:
    """Run one case on `backend` (natively, and decomposed for composites) against the reference."""
    graph = build_graph(case)
    expected = _run(backends.get("numpy"), graph, case)
    variants = [("as lowered", graph)]
    if all_ops()[case.op].is_composite:
        variants.append(("decomposed", decompose(graph, lambda op: False)))
    failures = []
    for variant, g in variants:
        try:
            got = _run(backend, g, case)
        except (IsoformError, Exception) as e:  # a crash is a conformance failure, reported with its type
            failures.append(Failure(backend.name, str(case), variant, f"raised {type(e).__name__}: {e}"))
            continue
        for name, want in expected.items():
            problem = compare(np.asarray(want), np.asarray(got[name]))
            if problem:
                failures.append(Failure(backend.name, str(case), variant, f"output {name}: {problem}"))
    return failures


def run_conformance(backend: str | Backend, ops: Iterable[str] | None = None, seed: int = 0) -> list[Failure]:
    """Run every case (or those of `ops`) on `backend`; return the failures (empty if it conforms)."""
    be = backends.get(backend)
    wanted = set(ops) if ops is not None else set(all_ops())
    cases = [c for c in all_cases(seed) if c.op in wanted]
    covered = {c.op for c in cases}
    failures = [Failure(be.name, op, "-", "no conformance case covers this op") for op in sorted(wanted - covered)]
    for case in cases:
        failures.extend(check_case(be, case))
    return failures
