"""Strict, streaming load of a checkpoint into graph parameters through a :class:`WeightMap`."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, WeightsError
from .dtypes import FLOAT_DTYPES, check_float_dtype, dtype_name, is_floating, to_numpy_dtype
from .mapping import Rule, WeightMap
from .readers import Checkpoint, SafetensorsCheckpoint, open_checkpoint
from .transforms import Shape

PROGRESS_MIN_TENSORS = 50
PROGRESS_MIN_BYTES = 100 * 1024 * 1024


@dataclass
class _Job:
    """One application of a rule: checkpoint ``sources`` -> graph ``targets``."""

    rule: Rule
    sources: list[str]
    targets: list[str]
    shapes: list[Shape] = field(default_factory=list)
    keep: set[str] = field(default_factory=set)  # targets the graph uses
    order: int = 0


@dataclass(frozen=True)
class NewParams:
    """Graph parameters a checkpoint may lack, created as transformers initialises a new task head:
    those whose name matches one of ``patterns`` (``re.search``). Norm weights (``LayerNorm``/``norm``
    in the name, 1-d) are ones, other 1-d tensors (biases) zeros, the rest normal(0, ``std``) drawn from
    ``numpy.random.default_rng(seed)`` in parameter order. ``model`` names the model in the warning
    that lists them."""

    patterns: tuple[str, ...]
    std: float
    seed: int = 0
    model: str = "the model"

    def covers(self, name: str) -> bool:
        return any(re.search(p, name) for p in self.patterns)

    def create(self, name: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        if len(shape) == 1:
            norm = name.endswith(".weight") and re.search(r"(?i)norm", name)
            return np.full(shape, 1.0 if norm else 0.0, np.float32)
        return rng.normal(0.0, self.std, shape).astype(np.float32)


def _spec(value: Any) -> tuple[Shape, str | None]:
    """Normalize an ``expected`` entry: ``(shape, dtype)``, a bare shape, or an object with .shape/.dtype."""
    if hasattr(value, "shape"):
        dt = getattr(value, "dtype", None)
        return tuple(int(d) for d in value.shape), dtype_name(dt) if dt is not None else None
    if isinstance(value, tuple | list) and len(value) == 2 and isinstance(value[0], tuple | list):
        return tuple(int(d) for d in value[0]), dtype_name(value[1]) if value[1] is not None else None
    return tuple(int(d) for d in value), None


def _fmt(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _group(
    checkpoint: Checkpoint, weight_map: WeightMap, problems: dict[str, list[str]], incomplete: set[str]
) -> list[_Job]:
    """Match checkpoint names to rules and group them into jobs (``incomplete``: targets lacking sources)."""
    groups: dict[tuple[int, tuple[tuple[str, str], ...]], dict[int, str]] = {}
    first: dict[tuple[int, tuple[tuple[str, str], ...]], int] = {}
    rule_ids = {id(r): n for n, r in enumerate(weight_map.rules)}
    for order, key in enumerate(checkpoint.keys()):
        m = weight_map.match_checkpoint(key)
        if m is None:
            if not weight_map.is_ignored(key):
                problems["unexpected"].append(f"{key!r} {_fmt(checkpoint.shape(key))}: matches no rule")
            continue
        rule, index, values = m
        gid = (rule_ids[id(rule)], tuple(sorted(values.items())))
        slots = groups.setdefault(gid, {})
        first.setdefault(gid, order)
        if index in slots:
            problems["duplicate"].append(f"{slots[index]!r} and {key!r} both map to {rule.hf[index].fill(values)!r}")
            continue
        slots[index] = key
    jobs = []
    for gid, slots in groups.items():
        rule = weight_map.rules[gid[0]]
        values = dict(gid[1])
        targets = [t.fill(values) for t in rule.params]
        if len(slots) < len(rule.hf):
            lacking = [rule.hf[i].fill(values) for i in range(len(rule.hf)) if i not in slots]
            problems["missing"].append(
                f"{targets[0]!r}: needs checkpoint tensors {lacking} besides {sorted(slots.values())}"
            )
            incomplete.update(targets)
            continue
        jobs.append(_Job(rule, [slots[i] for i in range(len(rule.hf))], targets, order=first[gid]))
    return sorted(jobs, key=lambda j: j.order)


def _wanted(weight_map: WeightMap, name: str) -> str:
    """Which checkpoint names would have provided graph param ``name``."""
    tie = f", nor to {weight_map.tied[name]!r} it is tied to" if name in weight_map.tied else ""
    m = weight_map.match_param(name)
    if m is None:
        return f"no rule of the weight map produces it{tie}"
    rule, _, values = m
    return f"no checkpoint tensor maps to it{tie} (looked for {[t.fill(values) for t in rule.hf]})"


def plan_load(
    checkpoint: Checkpoint, weight_map: WeightMap, expected: Mapping[str, Any], new: NewParams | None = None
) -> tuple[list[_Job], dict[str, str]]:
    """Check the checkpoint against ``expected`` using headers only. Returns the jobs to run and
    ``{graph param: produced param}`` for every expected name the checkpoint supplies; raises one
    WeightsError listing every missing (unless ``new`` covers it), unexpected, duplicate and
    mis-shaped tensor."""
    problems: dict[str, list[str]] = {"missing": [], "unexpected": [], "duplicate": [], "wrong shape": []}
    specs = {name: _spec(v) for name, v in expected.items()}
    incomplete: set[str] = set()
    jobs = _group(checkpoint, weight_map, problems, incomplete)
    produced: dict[str, tuple[_Job, int]] = {}
    for job in jobs:
        for i, target in enumerate(job.targets):
            if target in produced:
                problems["duplicate"].append(
                    f"{target!r} comes from both {produced[target][0].sources} and {job.sources}"
                )
            produced[target] = (job, i)
    # Ties: a tied name is served by whichever of the pair the checkpoint holds (the target first).
    share: dict[str, str] = {}
    for alias, target in weight_map.tied.items():
        if target in produced:
            produced.pop(alias, None)  # a stored copy of a tied weight is not read
            share[alias] = target
        elif alias in produced:
            share[target] = alias
    source_of: dict[str, str] = {}
    for name, (shape, _) in specs.items():
        src = name if name in produced else share.get(name)
        if src is None or src not in produced:
            if name not in incomplete and not (new is not None and new.covers(name)):
                problems["missing"].append(f"{name!r} {_fmt(shape)}: {_wanted(weight_map, name)}")
            continue
        source_of[name] = src
        produced[src][0].keep.add(src)
    for job in jobs:
        sizes = None
        if len(job.targets) > 1 and all(t in specs for t in job.targets):
            sizes = [specs[t][0][job.rule.axis] for t in job.targets]
        try:
            job.shapes = job.rule.forward_shapes([checkpoint.shape(k) for k in job.sources], sizes)
        except (WeightsError, IndexError) as e:
            problems["wrong shape"].append(f"{job.sources} -> {job.targets}: {e}")
            job.keep.clear()
    for name, src in source_of.items():
        job, i = produced[src]
        if job.shapes and job.shapes[i] != specs[name][0]:
            got = ", ".join(f"{k!r} {_fmt(checkpoint.shape(k))}" for k in job.sources)
            problems["wrong shape"].append(
                f"param {name!r} expects {_fmt(specs[name][0])}, checkpoint {got} gives {_fmt(job.shapes[i])}"
            )
    for target, (job, _) in produced.items():
        if target not in job.keep and job.shapes:
            problems["unexpected"].append(f"{job.sources} -> {target!r}: not a parameter of the graph")
    count = sum(len(v) for v in problems.values())
    if count:
        lines = [f"checkpoint {', '.join(map(str, checkpoint.files))} does not match the model ({count} problems):"]
        for kind, items in problems.items():
            if items:
                lines.append(f"  {kind} ({len(items)}):")
                lines.extend(f"    {item}" for item in items)
        raise WeightsError("\n".join(lines))
    return [j for j in jobs if j.keep], source_of


#: A build may declare this many parameters the checkpoint cannot supply (or supplies in another
#: shape) before `source_check` stops it: enough for every problem list of a real mismatch, few
#: enough that a config asking for 10^12 layers fails in milliseconds.
UNSUPPLIED_LIMIT = 64


def source_check(checkpoint: Checkpoint, weight_map: WeightMap, sizes: Mapping[str, int] | None = None
                 ) -> Callable[[str, tuple[int, ...]], None]:
    """A parameter check for `isoform.ir.builder.checking_params`: counts declared parameters that no
    checkpoint tensor supplies, or supplies in another shape (headers only), and raises ConfigError
    once more than `UNSUPPLIED_LIMIT` are, naming the first ones, the config's layer counts in
    ``sizes`` and the checkpoint's layers. Fewer problems are left to `load_params`' full report."""
    jobs = _group(checkpoint, weight_map, {"missing": [], "unexpected": [], "duplicate": []}, set())
    shapes: dict[str, Shape | None] = {}
    for job in jobs:
        try:
            known = job.rule.forward_shapes([checkpoint.shape(k) for k in job.sources]) if len(job.targets) == 1 else None
        except (WeightsError, IndexError):
            known = None
        shapes.update({t: known[0] if known else None for t in job.targets})
    for alias, target in weight_map.tied.items():
        if alias in shapes or target in shapes:
            shapes.setdefault(alias, shapes.get(target))
            shapes.setdefault(target, shapes.get(alias))
    unsupplied: list[str] = []

    def check(name: str, shape: tuple[int, ...]) -> None:
        if name not in shapes:
            unsupplied.append(f"{name!r} {_fmt(shape)} (no checkpoint tensor)")
        elif shapes[name] is not None and tuple(shapes[name]) != tuple(shape):
            unsupplied.append(f"{name!r} {_fmt(shape)} (the checkpoint's is {_fmt(shapes[name])})")
        if len(unsupplied) > UNSUPPLIED_LIMIT:
            layers = sorted({int(m) for k in checkpoint for m in re.findall(r"\.(\d+)\.", k)})
            counts = ", ".join(f"{k}={v}" for k, v in (sizes or {}).items())
            raise ConfigError(
                f"the config does not fit checkpoint {', '.join(map(str, checkpoint.files))}: building stopped after "
                f"{len(unsupplied)} parameters it cannot supply, first {', '.join(unsupplied[:3])}; the config's layer "
                f"counts: {counts or 'none declared'}; the checkpoint's layer indices: "
                f"{f'{layers[0]}..{layers[-1]}' if layers else 'none'}")

    return check


def check_params(checkpoint: Checkpoint, weight_map: WeightMap, expected: Mapping[str, Any]) -> None:
    """Raise the WeightsError :func:`load_params` would raise, reading headers only (no tensor data)."""
    plan_load(checkpoint, weight_map, expected)


def auto_dtype(config: Mapping[str, Any], checkpoint: Checkpoint) -> str:
    """The float dtype transformers' ``from_pretrained(dtype="auto")`` picks: ``config.json``'s ``dtype``
    (or legacy ``torch_dtype``), else that of the first floating-point tensor (float8 skipped) of the
    checkpoint's first file (shard names sorted; safetensors keys sorted, as ``safe_open`` lists them),
    read from headers only. WeightsError if that is not a dtype isoform loads (float32/16, bfloat16)."""
    found, source = config.get("dtype") or config.get("torch_dtype"), "config.json"
    if not found:
        first = min(checkpoint.files, key=lambda p: p.name)
        with open_checkpoint(first) as part:
            keys = sorted(part.keys()) if isinstance(part, SafetensorsCheckpoint) else part.keys()
            dtypes = [part.dtype(k) for k in keys]
        floats = [d for d in dtypes if _float_weight(d)]
        found, source = (floats or dtypes or ["float32"])[0], f"the weights in {first.name}"
    try:
        return check_float_dtype(found)
    except WeightsError:
        raise WeightsError(f"dtype='auto' is {found!r} (from {source}), which isoform does not load; pass dtype= one of "
                           f"{list(FLOAT_DTYPES)}") from None


def _float_weight(dtype: str) -> bool:
    try:  # float8 (and codes the installed ml_dtypes lacks) are skipped, as transformers skips float8/float4
        return is_floating(dtype) and not dtype.startswith("float8")
    except WeightsError:
        return False


def _finish(array: np.ndarray, target: str | None) -> np.ndarray:
    """Cast floating arrays to ``target`` and make the result C-contiguous, copying at most once."""
    if target is not None and is_floating(array.dtype) and is_floating(target):
        dt = to_numpy_dtype(target)
        if array.dtype != dt:
            return array.astype(dt, order="C")
    return np.require(array, requirements="C")  # not ascontiguousarray: it makes 0-d arrays 1-d


def load_params(
    checkpoint: Checkpoint | str | os.PathLike[str],
    weight_map: WeightMap,
    expected: Mapping[str, Any],
    dtype: str | None = None,
    to_native: Callable[[str, np.ndarray], Any] | None = None,
    *,
    progress: bool | None = None,
    new: NewParams | None = None,
) -> dict[str, Any]:
    """Load every graph parameter in ``expected`` from ``checkpoint`` through ``weight_map``.

    ``expected`` maps parameter names to ``(shape, dtype)`` (or objects with ``.shape``/``.dtype``).
    All problems (missing, unexpected, duplicate, mis-shaped) are found from headers and raised as
    one :class:`WeightsError` before any data is read. Tensors are then streamed one at a time:
    read (memory-mapped), transformed, cast (floating tensors to ``dtype``, else to the expected
    dtype; integer and bool tensors keep theirs) and handed to ``to_native(name, array)``; the array
    may be a read-only view of the mapped file, so a converter that keeps it should copy it.

    ``checkpoint`` may also be a directory, opened and closed here (then pass a ``to_native`` that
    copies, or the arrays keep the file mapped). Returns ``{name: native}`` in the order of
    ``expected``; tied names map to the *same* object.
    ``progress``: tqdm bar; ``None`` shows it above 50 tensors or 100 MB. ``new``: parameters the
    checkpoint may lack, then created (`NewParams`; tied ones once) and listed in one warning.
    """
    dtype = check_float_dtype(dtype)
    if not isinstance(checkpoint, Checkpoint):
        with open_checkpoint(checkpoint) as ckpt:
            return load_params(ckpt, weight_map, expected, dtype, to_native, progress=progress, new=new)
    jobs, source_of = plan_load(checkpoint, weight_map, expected, new)
    specs = {name: _spec(v) for name, v in expected.items()}
    want_dtype: dict[str, str | None] = {}
    for name, src in source_of.items():
        want_dtype.setdefault(src, specs[name][1])
    total = sum(checkpoint.nbytes(k) for j in jobs for k in j.sources)
    if progress is None:
        progress = len(jobs) > PROGRESS_MIN_TENSORS or total > PROGRESS_MIN_BYTES
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc="Loading weights")
    loaded: dict[str, Any] = {}
    try:
        for job in jobs:
            sizes = [s[job.rule.axis] for s in job.shapes] if len(job.targets) > 1 else None
            arrays = job.rule.forward([checkpoint.get(k) for k in job.sources], sizes)
            for target, array in zip(job.targets, arrays):
                if target in job.keep:
                    array = _finish(array, dtype or want_dtype.get(target))
                    loaded[target] = to_native(target, array) if to_native else array
            del arrays, array  # drop this tensor's NumPy copy before reading the next
            if to_native is not None:  # converted: its pages of the mapped file are no longer needed
                for k in job.sources:
                    checkpoint.release(k)
            if bar is not None:
                bar.update(sum(checkpoint.nbytes(k) for k in job.sources))
    finally:
        if bar is not None:
            bar.close()
    created = [name for name in expected if name not in source_of]
    if created:
        rng = np.random.default_rng(new.seed)
        for name in created:
            key = source_of[name] = weight_map.tied.get(name, name)  # a tied pair is created once
            if key not in loaded:
                array = _finish(new.create(name, specs[name][0], rng), dtype or specs[name][1])
                loaded[key] = to_native(name, array) if to_native else array
        warnings.warn(f"Some weights of {new.model} were not initialized from the model checkpoint at "
                      f"{', '.join(map(str, checkpoint.files))} and are newly initialized: {created}\nYou should "
                      "probably TRAIN this model on a down-stream task to be able to use it for predictions and "
                      "inference.", stacklevel=3)
    return {name: loaded[source_of[name]] for name in expected}
