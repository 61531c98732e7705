"""Parity-table coverage: every task an architecture declares must have a parity case.

    check_task_coverage(CausalLM, {"GPT2LMHeadModel", ...})   # AssertionError naming the gaps

A family's parity test lists its cases by transformers class; this compares them with the classes
the registered subclasses of ``base`` declare in ``tasks``, so a new architecture or head fails
its family's parity file until it has a case.
"""

from __future__ import annotations

from collections.abc import Collection

from ..architectures import REGISTRY


def declared(base: type) -> dict[tuple[str, str | None], list[str]]:
    """(model_type, task) -> the transformers classes it loads, for every registered subclass of ``base``."""
    pairs: dict[tuple[str, str | None], list[str]] = {}
    for model_type, arch in REGISTRY.items():
        if issubclass(arch, base):
            for cls, task in [*((c, t) for t, c in arch.tasks.items()), *arch.checkpoint_classes.items()]:
                pairs.setdefault((model_type, task), []).append(cls)
    return pairs


def check_task_coverage(base: type, cases: Collection[str | tuple[str, str]]) -> None:
    """AssertionError unless ``cases`` cover exactly the classes the subclasses of ``base`` declare,
    naming the undeclared cases or the (model_type, task) pairs missing. A case is a transformers class
    name, or ``(model_type, class)`` where several model types declare that class (CLIP's towers)."""
    by_class: dict[str, list[tuple[str, str]]] = {}
    for (model_type, _), classes in declared(base).items():
        for cls in classes:
            by_class.setdefault(cls, []).append((model_type, cls))
    covered = set()
    for case in cases:
        owners = [case] if isinstance(case, tuple) else by_class.get(case, [])
        assert len(owners) == 1 and owners[0] in by_class.get(owners[0][1], []), (
            f"case {case!r} is undeclared" if not owners else f"case {case!r} is declared by {owners}: name its model_type")
        covered.add(owners[0])
    missing = sorted({pair for pair, classes in declared(base).items()
                      if any((pair[0], cls) not in covered for cls in classes)}, key=str)
    assert not missing, f"(model_type, task) without a parity case in this file: {missing}"
