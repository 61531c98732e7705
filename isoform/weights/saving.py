"""Save graph parameters back to the Hugging Face layout: ``config.json`` + ``model.safetensors``
(sharded with ``model.safetensors.index.json`` above ``max_shard_size``), streamed tensor by tensor."""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..staging import moved, staged_directory
from .dtypes import dtype_name, safetensors_code, to_numpy_dtype
from .mapping import Rule, WeightMap
from .readers import SAFE_INDEX, SAFE_SINGLE
from .transforms import Shape

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string such as ``"5GB"`` (decimal) or ``"2GiB"`` (binary)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", size)
    if not m or m.group(2).upper() not in _UNITS:
        raise WeightsError(f"invalid size {size!r}; expected e.g. 5GB, 500MB, 2GiB or a number of bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


@dataclass
class _SaveJob:
    rule: Rule
    params: list[str]
    names: list[str]  # checkpoint names written
    shapes: list[Shape]
    dtype: str


def _plan(params: Mapping[str, np.ndarray], weight_map: WeightMap) -> list[_SaveJob]:
    """Group parameters into inverse rule applications; one WeightsError lists every problem."""
    problems: list[str] = []
    names = list(params)
    renamed: dict[str, str] = {}  # graph name -> name it is saved as (a tie whose target is absent)
    for alias, target in weight_map.tied.items():
        if alias in params:
            if target in params:
                if np.shape(params[alias]) != np.shape(params[target]):
                    problems.append(f"tied params {alias!r} {np.shape(params[alias])} and {target!r} "
                                    f"{np.shape(params[target])} differ in shape")
                names.remove(alias)  # stored once, under the target's name
            else:
                renamed[alias] = target
    groups: dict[tuple[int, tuple[tuple[str, str], ...]], dict[int, str]] = {}
    rule_ids = {id(r): n for n, r in enumerate(weight_map.rules)}
    for name in names:
        m = weight_map.match_param(renamed.get(name, name))
        if m is None:
            problems.append(f"param {name!r} matches no rule of the weight map")
            continue
        rule, index, values = m
        groups.setdefault((rule_ids[id(rule)], tuple(sorted(values.items()))), {})[index] = name
    jobs = []
    for (rid, items), slots in groups.items():
        rule, values = weight_map.rules[rid], dict(items)
        if len(slots) < len(rule.params):
            lacking = [rule.params[i].fill(values) for i in range(len(rule.params)) if i not in slots]
            problems.append(f"params {lacking} are needed with {sorted(slots.values())} to write {rule!r}")
            continue
        members = [slots[i] for i in range(len(rule.params))]
        arrays = [params[p] for p in members]
        try:
            shapes = rule.backward_shapes([tuple(np.shape(a)) for a in arrays])
            dt = np.result_type(*[a.dtype for a in arrays])
            dtype = rule.transform.inverse().out_dtype(dtype_name(dt))
        except WeightsError as e:
            problems.append(f"{members}: {e}")
            continue
        hf = [weight_map.hf_name(rule, i, values) for i in range(len(rule.hf))]
        jobs.append(_SaveJob(rule, members, hf, shapes, dtype))
    if problems:
        raise WeightsError(f"cannot save ({len(problems)} problems):\n" + "\n".join(f"  {p}" for p in problems))
    return jobs


def _nbytes(shape: Shape, dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * to_numpy_dtype(dtype).itemsize


def _write_safetensors(path: Path, entries: list[tuple[str, Shape, str]], produce: Any, meta: dict[str, str]) -> None:
    """Write one safetensors file, asking ``produce(name)`` for each tensor in turn."""
    header: dict[str, Any] = {"__metadata__": meta}
    offset = 0
    for name, shape, dtype in entries:
        n = _nbytes(shape, dtype)
        header[name] = {"dtype": safetensors_code(to_numpy_dtype(dtype)), "shape": list(shape),
                        "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, shape, dtype in entries:
            array = np.require(produce(name), dtype=to_numpy_dtype(dtype), requirements="C")
            if array.shape != tuple(shape):
                raise WeightsError(f"tensor {name!r} came out with shape {array.shape}, not {tuple(shape)}")
            f.write(array.reshape(-1).view(np.uint8).data)


def save_params(
    directory: str | os.PathLike[str],
    params: Mapping[str, np.ndarray],
    weight_map: WeightMap,
    config_dict: Mapping[str, Any] | None,
    *,
    metadata: Mapping[str, str] | None = None,
    max_shard_size: int | str = "5GB",
) -> list[Path]:
    """Write ``params`` (graph names -> NumPy arrays) to ``directory`` in the Hugging Face layout.

    Names and layouts come from ``weight_map`` run backwards; a tied param whose target is also in
    ``params`` is stored once (like ``transformers``). Writes ``config.json`` (unless
    ``config_dict`` is None) and ``model.safetensors`` with metadata ``{"format": "pt"}``, or
    shards plus ``model.safetensors.index.json`` when larger than ``max_shard_size``, all or nothing
    (`isoform.staging`): a failed save leaves ``directory`` as it was, and saving over the checkpoint
    being used is safe. Returns the paths written.
    """
    out = Path(directory)
    params = {k: np.asarray(v) for k, v in params.items()}  # no copy for NumPy arrays
    jobs = _plan(params, weight_map)
    entries = [(n, s, j.dtype) for j in jobs for n, s in zip(j.names, j.shapes)]
    seen: set[str] = set()
    for name, _, _ in entries:
        if name in seen:
            raise WeightsError(f"two params would be saved as checkpoint tensor {name!r}")
        seen.add(name)
    limit = parse_size(max_shard_size)
    shards: list[list[tuple[str, Shape, str]]] = [[]]
    size = 0
    for entry in entries:
        n = _nbytes(entry[1], entry[2])
        if shards[-1] and size + n > limit:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += n

    job_of = {n: j for j in jobs for n in j.names}
    pending: dict[str, np.ndarray] = {}

    def produce(name: str) -> np.ndarray:
        if name not in pending:
            job = job_of[name]
            arrays = job.rule.backward([params[p] for p in job.params])
            pending.update(zip(job.names, arrays))
        return pending.pop(name)

    meta = {**(metadata or {}), "format": "pt"}
    with staged_directory(out, stale=checkpoint_files) as stage:
        written: list[Path] = []
        if config_dict is not None:
            (stage / "config.json").write_text(json.dumps(dict(config_dict), indent=2, sort_keys=True) + "\n")
            written.append(stage / "config.json")
        if len(shards) == 1:
            _write_safetensors(stage / SAFE_SINGLE, shards[0], produce, meta)
            written.append(stage / SAFE_SINGLE)
        else:
            weight_index: dict[str, str] = {}
            for k, shard in enumerate(shards, 1):
                fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
                _write_safetensors(stage / fname, shard, produce, meta)
                written.append(stage / fname)
                weight_index.update({name: fname for name, _, _ in shard})
            index = {"metadata": {"total_size": sum(_nbytes(s, d) for _, s, d in entries)},
                     "weight_map": dict(sorted(weight_index.items()))}
            (stage / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n")
            written.append(stage / SAFE_INDEX)
    return moved(written, stage, out)


def checkpoint_files(directory: Path) -> set[Path]:
    """safetensors files of an earlier save in ``directory`` (removed if a save does not rewrite them)."""
    found = {p for p in (directory / SAFE_SINGLE, directory / SAFE_INDEX) if p.is_file()}
    found |= set(directory.glob("model-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].safetensors"))
    return found
