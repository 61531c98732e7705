"""Strict safetensors header parsing: a file is accepted here exactly when the safetensors library accepts it.

Mirrors ``SafeTensors::read_metadata`` and ``Metadata::validate`` of ``safetensors/src/tensor.rs`` (0.8), in
their order: the 8-byte length and its limit, UTF-8, JSON as serde_json reads it (no NaN/Infinity, numbers
within f64, unpaired surrogates and nesting past its recursion limit refused, repeated keys parsed),
``__metadata__`` as an object of strings, each entry's dtype, shape and data_offsets, and offsets that tile
the data exactly (no gap, overlap, size mismatch or trailing bytes). The installed safetensors library, if
any, then confirms. :func:`read_header` is the entry point; errors are :class:`~isoform.errors.WeightsError`.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WeightsError
from .dtypes import SAFETENSORS_DTYPES

_HEADER_LIMIT = 100_000_000  # MAX_HEADER_SIZE of the safetensors library (safetensors/src/tensor.rs)
_U64_MAX = 2**64 - 1  # shape dims and offsets are Rust usize (64-bit)
_JSON_DEPTH_LIMIT = 128  # serde_json's recursion limit: 127 nested arrays/objects parse, 128 do not
# bits per element of every dtype the safetensors library (0.8) knows; F4 and F6 pack several per byte
_DTYPE_BITS = {code: dt.itemsize * 8 for code, dt in SAFETENSORS_DTYPES.items()} | {
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "C64": 64,
}
_PACKED = {"F4", "F6_E2M3", "F6_E3M2"}  # known to the format, not readable element by element
_SURROGATE = re.compile("[\ud800-\udfff]")  # left by an unpaired \uXXXX escape, which serde_json refuses


def _numpy_dtype(code: str) -> np.dtype | None:
    """NumPy dtype of a safetensors code (None where neither NumPy nor the installed ml_dtypes has it)."""
    if code in SAFETENSORS_DTYPES:
        return SAFETENSORS_DTYPES[code]
    if code == "C64":
        return np.dtype("<c8")
    import ml_dtypes

    name = {"F8_E8M0": "float8_e8m0fnu", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
            "F4": "float4_e2m1fn", "F6_E2M3": "float6_e2m3fn", "F6_E3M2": "float6_e3m2fn"}[code]
    kind = getattr(ml_dtypes, name, None)
    return None if kind is None else np.dtype(kind)


class _JsonObject(dict):
    """A JSON object as ``json`` builds it (a repeated key keeps its last value, as serde's maps do);
    ``shadowed`` holds the earlier values of repeated keys, which serde still parses and checks."""

    shadowed: tuple[tuple[str, Any], ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    if len(obj) != len(pairs):
        last = {k: i for i, (k, _) in enumerate(pairs)}
        obj.shadowed = tuple(kv for i, kv in enumerate(pairs) if last[kv[0]] != i)
    return obj


def _json_int(text: str) -> int | float:
    # serde_json reads an integer beyond i64/u64 (and "-0") as a float, and refuses one beyond f64
    if len(text) > 20 or text == "-0":
        return _json_float(text)
    value = int(text)
    return value if -(2**63) <= value <= _U64_MAX else float(value)


def _json_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:24]}{'...' if len(text) > 24 else ''} out of range")
    return value


def _json_constant(text: str) -> None:
    raise ValueError(f"{text} is not JSON")


def _parse_json(text: str) -> Any:
    """``json.loads`` refusing what serde_json refuses: NaN/Infinity, numbers beyond f64."""
    # int() is faster, and reads every integer as serde_json does but "-0" (a float there) and those
    # beyond u64 (floats there, refused beyond f64): those only matter in ignored fields, checked there
    parse_int = _json_int if "-0" in text else None
    return json.loads(text, object_pairs_hook=_json_object, parse_int=parse_int, parse_float=_json_float,
                      parse_constant=_json_constant)


def _surrogate(s: str) -> bool:
    return not s.isascii() and _SURROGATE.search(s) is not None


def _ignored_value_problem(value: Any, level: int) -> str | None:
    """What serde_json refuses in a value it parses and discards (an unknown field): nesting past its
    recursion limit, or a string with an unpaired surrogate. ``level``: nesting level of ``value``."""
    stack = [(value, level)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str):
            if _surrogate(node):
                return f"string {node!r} has an unpaired UTF-16 surrogate escape"
        elif type(node) is int and not -(2**63) <= node <= _U64_MAX:
            try:
                float(node)
            except OverflowError:
                return f"the number {str(node)[:24]}... is out of range"
        elif isinstance(node, (dict, list)):
            if at >= _JSON_DEPTH_LIMIT:
                return f"it nests arrays/objects {_JSON_DEPTH_LIMIT} levels deep (the limit is {_JSON_DEPTH_LIMIT - 1})"
            if isinstance(node, dict):
                items = [*node.items(), *getattr(node, "shadowed", ())]
                stack.extend((k, at + 1) for k, _ in items)
                stack.extend((v, at + 1) for _, v in items)
            else:
                stack.extend((v, at + 1) for v in node)
    return None


def _is_usize(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _U64_MAX  # (a bool is no integer to serde)


_FIELDS = ("dtype", "shape", "data_offsets")


class _Where:
    """``tensor 'name' (data_offsets [b, e])`` for a message, formatted only when one is raised."""

    __slots__ = ("begin", "end", "key")

    def __init__(self, key: str, begin: int, end: int):
        self.key, self.begin, self.end = key, begin, end

    def __format__(self, spec: str) -> str:
        return f"tensor {self.key!r} (data_offsets [{self.begin}, {self.end}])"


def _kind(v: Any) -> str:
    return {dict: "object", _JsonObject: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(v), "number")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."

@dataclass
class Header:
    """A validated header. ``entries``: name -> (NumPy dtype, or None where the installed ml_dtypes lacks
    it; shape; begin; end), in offset order, offsets relative to ``data_start``; ``codes``: name ->
    safetensors dtype code."""

    data_start: int
    metadata: dict[str, str]
    entries: dict[str, tuple[np.dtype | None, tuple[int, ...], int, int]] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)


def _bad(path: Path, what: str) -> WeightsError:
    return WeightsError(f"corrupt safetensors file {path}: {what}")


def read_header(path: Path) -> Header:
    """Parse and validate the header of the safetensors file ``path``; raise :class:`WeightsError` naming
    the first problem, checked in the order of ``SafeTensors::read_metadata``."""
    # the checks of the safetensors library's SafeTensors::read_metadata (safetensors/src/tensor.rs,
    # 0.8), in its order: a file opens here exactly when it opens there (tests/test_fuzz_safetensors.py)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _bad(path, f"file is {size} bytes, too short for the 8-byte header length (truncated?)")
        (n,) = struct.unpack("<Q", head)
        if n > _HEADER_LIMIT:
            raise _bad(path, f"header length {n} exceeds the safetensors limit of {_HEADER_LIMIT} bytes")
        if n > size - 8:
            raise _bad(path, f"header length {n} is beyond the end of the {size}-byte file (truncated?)")
        raw = f.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad(path, f"header is not valid UTF-8 ({e})") from None
    try:  # leading and trailing JSON whitespace (the usual padding) is fine, as for serde_json
        header = _parse_json(text)
    except RecursionError:
        raise _bad(path, "header is not valid JSON (nested too deeply)") from None
    except ValueError as e:
        raise _bad(path, f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _bad(path, f"header is a JSON {_kind(header)}, not an object")
    data_start = 8 + n
    data_size = size - data_start
    out = Header(data_start, _metadata(path, header))
    for key, info in header.shadowed:  # a repeated name: the last one counts, but all must parse
        if key != "__metadata__":
            _entry(path, key, info)
    entries = [(key, _entry(path, key, info)) for key, info in header.items() if key != "__metadata__"]
    # the tensors, by offset, must tile the data exactly: from byte 0, each where the last ended
    entries.sort(key=lambda kv: (kv[1][2], kv[1][3]))
    end, prev = 0, None
    for key, (code, shape, begin, stop) in entries:
        where = _Where(key, begin, stop)
        if begin < end:
            raise _bad(path, f"{where} overlaps tensor {prev!r}, which ends at byte {end}")
        if begin > end:
            first = " (the first tensor must start at byte 0)" if prev is None else ""
            raise _bad(path, f"{where} leaves a gap: data bytes {end}..{begin} belong to no tensor{first}")
        if stop < begin:
            raise _bad(path, f"{where} ends before it begins")
        count = 1
        for d in shape:
            count *= d
            if count > _U64_MAX:
                raise _bad(path, f"{where}: the element count of shape {_show(shape)} overflows 64 bits")
        bits = count * _DTYPE_BITS[code]
        if bits > _U64_MAX:
            raise _bad(path, f"{where}: the size of shape {_show(shape)} in {code} overflows 64 bits")
        if bits % 8:
            raise _bad(path, f"{where}: shape {_show(shape)} of {code} is {bits} bits, not whole bytes")
        if stop - begin != bits // 8:
            raise _bad(path, f"{where} of shape {_show(shape)} and dtype {code} needs {bits // 8} bytes, "
                            f"has {stop - begin}")
        if stop > data_size:
            raise _bad(path, f"{where} ends at data byte {stop} but the file holds only {data_size} data "
                            "bytes (truncated?)")
        end, prev = stop, key
        out.entries[key] = (_numpy_dtype(code), tuple(shape), begin, stop)
        out.codes[key] = code
    if end != data_size:
        last = f"tensor {prev!r}" if prev is not None else "the header (there are no tensors)"
        raise _bad(path, f"{data_size - end} bytes after {last} at data byte {end} belong to no tensor "
                        f"(the file has {size} bytes, the header accounts for {data_start + end})")
    _confirm_with_library(path)
    return out

def _metadata(path: Path, header: _JsonObject) -> dict[str, str]:
    if any(k == "__metadata__" for k, _ in header.shadowed):
        raise _bad(path, "header has __metadata__ twice")
    meta = header.get("__metadata__")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise _bad(path, f"__metadata__ is a JSON {_kind(meta)}, not an object of strings")
    for k, v in [*meta.items(), *meta.shadowed]:
        if not isinstance(v, str):
            raise _bad(path, f"__metadata__ value for {k!r} is {_show(v)}, not a string")
        if _surrogate(k) or _surrogate(v):
            raise _bad(path, f"__metadata__ entry {k!r}: {_show(v)} has an unpaired UTF-16 surrogate escape")
    return dict(meta)

def _entry(path: Path, key: str, info: Any) -> tuple[str, list[int], int, int]:
    """What serde checks while parsing one tensor's entry: field types; not offsets nor sizes."""
    if _surrogate(key):
        raise _bad(path, f"tensor name {key!r} has an unpaired UTF-16 surrogate escape")
    if isinstance(info, list):  # serde reads a struct from the list of its fields too
        if len(info) != 3:
            raise _bad(path, f"entry for tensor {key!r} is a list of {len(info)} items, not [dtype, shape, "
                            "data_offsets]")
        code, shape, offsets = info
    elif isinstance(info, dict):
        try:
            code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        except KeyError as e:
            raise _bad(path, f"entry for tensor {key!r} has no {e.args[0]!r}") from None
        if len(info) != 3 or info.shadowed:  # unknown or repeated fields
            _check_fields(path, key, info)
    else:
        raise _bad(path, f"entry for tensor {key!r} is a JSON {_kind(info)}, not an object")
    if isinstance(code, dict) and len(code) == 1 and not code.shadowed and None in code.values():
        code = next(iter(code))  # serde reads a unit enum variant from {"F32": null} too
    if not isinstance(code, str) or code not in _DTYPE_BITS:
        raise _bad(path, f"tensor {key!r} has unknown dtype {_show(code)} (safetensors knows "
                        f"{', '.join(sorted(_DTYPE_BITS))})")
    if type(shape) is not list or not all(type(d) is int and 0 <= d <= _U64_MAX for d in shape):
        raise _bad(path, f"tensor {key!r} has invalid shape {_show(shape)} (not a list of integers 0..2**64-1)")
    if type(offsets) is not list or len(offsets) != 2 or not (_is_usize(offsets[0]) and _is_usize(offsets[1])):
        raise _bad(path, f"tensor {key!r} has invalid data_offsets {_show(offsets)} (not [begin, end] "
                        "integers 0..2**64-1)")
    return code, shape, offsets[0], offsets[1]

def _check_fields(path: Path, key: str, info: _JsonObject) -> None:
    for name, _ in info.shadowed:
        if name in _FIELDS:
            raise _bad(path, f"entry for tensor {key!r} has {name!r} twice")
    for name, value in [*info.items(), *info.shadowed]:
        if name not in _FIELDS:  # an unknown field is ignored, once serde_json has parsed it
            problem = _ignored_value_problem(name, 3) or _ignored_value_problem(value, 3)
            if problem:
                raise _bad(path, f"entry for tensor {key!r} has a field {name!r} where {problem}")

def _confirm_with_library(path: Path) -> None:
    """The installed safetensors library's own header check (it parses the header and maps the file,
    reading no data): refuse what it refuses, should its version differ from the checks above."""
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        return
    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except (SafetensorError, OSError) as e:
        raise _bad(path, f"rejected by the safetensors library: {e}") from None
