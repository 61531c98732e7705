"""A seeded fuzz loop: a target mutates some input from a seeded RNG and feeds it to isoform; every
case must either work or raise an `IsoformError` subclass, within a time limit per case.

A target is ``target(rng: numpy.random.Generator) -> None``. It raises `IsoformError` for a rejected
case (fine), returns for an accepted one (fine), and anything else fails the run: another exception
(a bare ``IndexError``, ``KeyError``, ``ZeroDivisionError``, ``MemoryError``, ``RecursionError`` ...),
an ``AssertionError`` the target raises itself (a differential check), or running past the time
limit (a hang). A failure names the target and the seed; ``ISOFORM_FUZZ_SEED=<seed>`` replays that
one case.

Budget: ``ISOFORM_FUZZ_SECONDS`` seconds per target (default `DEFAULT_SECONDS`, the CI budget);
``ISOFORM_FUZZ_SECONDS=600`` is the long run.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import IsoformError

DEFAULT_SECONDS = 8.0
CASE_SECONDS = 10.0  # a case running longer hangs (generous: the first case may import a framework)

Target = Callable[[np.random.Generator], None]


class CaseTimeout(Exception):
    """A case ran past its time limit."""


@dataclass
class Report:
    """What one fuzz run did: cases accepted and rejected, and the rejections by error class."""

    target: str
    accepted: int = 0
    rejected: int = 0
    errors: Counter = field(default_factory=Counter)

    @property
    def cases(self) -> int:
        return self.accepted + self.rejected

    def __str__(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in self.errors.most_common())
        return f"{self.target}: {self.cases} cases, {self.accepted} accepted, {self.rejected} rejected ({kinds or 'none'})"


def budget_seconds() -> float:
    return float(os.environ.get("ISOFORM_FUZZ_SECONDS", DEFAULT_SECONDS))


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `CaseTimeout` in the main thread after ``seconds`` (SIGALRM; no limit off the main thread
    or without SIGALRM)."""
    if not hasattr(signal, "setitimer") or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"case ran past {seconds} s")

    try:
        previous = signal.signal(signal.SIGALRM, expire)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_case(name: str, target: Target, seed: int, case_seconds: float = CASE_SECONDS) -> str | None:
    """Run one case; returns the error class name for a rejection, None when accepted, and raises
    AssertionError (with the seed and the traceback) on a failure."""
    try:
        with time_limit(case_seconds):
            target(np.random.default_rng(seed))
    except IsoformError as e:
        return type(e).__name__
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        trace = "".join(traceback.format_exception(e)[-6:])
        raise AssertionError(f"fuzz target {name!r} failed at seed {seed} (replay: ISOFORM_FUZZ_SEED={seed}): "
                             f"{type(e).__name__}: {e}\n{trace}") from None
    return None


def fuzz(name: str, target: Target, *, seconds: float | None = None, first_seed: int = 0,
         case_seconds: float = CASE_SECONDS) -> Report:
    """Run ``target`` on seeds ``first_seed, first_seed + 1, ...`` for ``seconds`` (default
    `budget_seconds`), or only on ``ISOFORM_FUZZ_SEED`` when that is set; returns the `Report`."""
    report = Report(name)
    replay = os.environ.get("ISOFORM_FUZZ_SEED")
    deadline = time.monotonic() + (budget_seconds() if seconds is None else seconds)
    for seed in [int(replay)] if replay else itertools.count(first_seed):
        error = run_case(name, target, seed, case_seconds)
        if error is None:
            report.accepted += 1
        else:
            report.rejected += 1
            report.errors[error] += 1
        if time.monotonic() >= deadline:
            break
    return report


def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """One random edit of ``data``: flip, overwrite, insert, delete, truncate or append bytes."""
    b = bytearray(data)
    kind = rng.integers(6)
    at = int(rng.integers(len(b) + 1))
    n = int(rng.integers(1, 9))
    if kind == 0 and b:
        b[min(at, len(b) - 1)] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        b[at:at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif kind == 2:
        b[at:at] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif kind == 3:
        del b[at:at + n]
    elif kind == 4:
        del b[at:]
    else:
        b += rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(b)


#: JSON values a config, tokenizer config or generation option may be replaced with.
HOSTILE_VALUES = (None, 0, -1, 1, 2, -(2**63), 2**40, 2**64, 1099511627776, 0.5, -0.0, float("nan"),
                  float("inf"), float("-inf"), True, False, "", "x", "gelu", [], [1], [0, 0], {}, {"a": 1}, 1e308)


def hostile_value(rng: np.random.Generator) -> object:
    """One of `HOSTILE_VALUES` (a fresh copy: callers may edit it)."""
    return copy.deepcopy(HOSTILE_VALUES[int(rng.integers(len(HOSTILE_VALUES)))])


def mutate_json(value: object, rng: np.random.Generator, edits: int = 1) -> object:
    """``value`` (a JSON tree) with ``edits`` random changes: a leaf replaced by a hostile value, a
    key dropped, a number scaled or negated, a list emptied."""
    tree = copy.deepcopy(value)
    for _ in range(edits):
        tree = _mutate_once(tree, rng)
    return tree


def _mutate_once(node: object, rng: np.random.Generator) -> object:
    if isinstance(node, dict) and node and rng.random() < 0.8:
        key = list(node)[int(rng.integers(len(node)))]
        if rng.random() < 0.15:
            del node[key]
            return node
        node[key] = _mutate_once(node[key], rng)
        return node
    if isinstance(node, list) and node and rng.random() < 0.8:
        i = int(rng.integers(len(node)))
        node[i] = _mutate_once(node[i], rng)
        return node
    if isinstance(node, (int, float)) and not isinstance(node, bool) and rng.random() < 0.5:
        return [-node, node * 1000, node + 1, node - 1, 0][int(rng.integers(5))]
    return hostile_value(rng)
