"""Parity-table coverage: every task an architecture declares must have a parity case.

    check_task_coverage(CausalLM, {"GPT2LMHeadModel", ...})   # AssertionError naming the gaps

A family's parity test lists its cases by transformers class; this compares them with the classes
the registered subclasses of ``base`` declare in ``tasks``, so a new architecture or head fails
its family's parity file until it has a case.
"""

from __future__ import annotations

from collections.abc import Collection

from ..architectures import REGISTRY


def declared(base: type) -> dict[str, tuple[str, str | None]]:
    """transformers class -> (model_type, task) for every task of every registered subclass of ``base``."""
    return {cls: (model_type, task) for model_type, arch in REGISTRY.items() if issubclass(arch, base)
            for task, cls in arch.tasks.items()}


def check_task_coverage(base: type, cases: Collection[str]) -> None:
    """AssertionError unless ``cases`` (transformers class names) are exactly the classes the
    subclasses of ``base`` declare: naming the undeclared cases or the (model_type, task) pairs missing."""
    classes, cases = declared(base), set(cases)
    assert cases <= set(classes), f"cases of undeclared tasks: {sorted(cases - set(classes))}"
    missing = sorted((classes[c] for c in set(classes) - cases), key=str)
    assert not missing, f"(model_type, task) without a parity case in this file: {missing}"
