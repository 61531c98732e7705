"""Differential fuzz of isoform's safetensors reader against the safetensors library: a mutated file
must be refused by isoform (with a WeightsError naming the file) exactly when the library refuses it,
and read to the same dtypes, shapes and bytes when both accept it.

``ISOFORM_FUZZ_SECONDS=120 python -m pytest -s tests/test_fuzz_safetensors.py`` is the long run;
``ISOFORM_FUZZ_SEED=<seed>`` replays one case.
"""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors import SafetensorError, deserialize, safe_open
from safetensors.numpy import save

from isoform.errors import WeightsError
from isoform.testing.fuzz import fuzz, mutate_bytes, mutate_json
from isoform.weights import open_checkpoint

TENSORS = {
    "emb.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
    "ln.bias": np.linspace(-1, 1, 5).astype(np.float16),
    "ids": np.arange(3, dtype=np.int64),
    "mask": np.array([True, False, True]),
    "h.bf16": np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(2, 3),
    "q.u8": np.arange(7, dtype=np.uint8),
    "f8": np.linspace(-2, 2, 4).astype(ml_dtypes.float8_e4m3fn),
    "empty": np.zeros((0, 4), np.float32),
    "scalar": np.array(2.5, np.float64),
}
META = {"format": "np", "note": "fuzz"}
VALID = save(TENSORS, metadata=META)  # its header is padded with spaces to a multiple of 8 bytes

# safetensors code -> the NumPy dtype name isoform reports
NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
         "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8",
         "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
         "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz", "C64": "complex64",
         "F4": "float4_e2m1fn", "F6_E2M3": "float6_e2m3fn", "F6_E3M2": "float6_e3m2fn"}
ODD_STRINGS = ["", "é", "\ud800", "\udc00x", "\U0001f600", "a\u0000b", "__metadata__"]


def _split(blob: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _join(text: str | bytes, data: bytes, length: int | None = None) -> bytes:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _dumps(header: dict, rng: np.random.Generator) -> str:
    return json.dumps(header, separators=[(",", ":"), (", ", ": ")][int(rng.integers(2))],
                      ensure_ascii=bool(rng.integers(2)))


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _sound(info: object) -> bool:
    """An entry still fit for targeted edits."""
    ints = lambda v: isinstance(v, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in v)
    return (isinstance(info, dict) and isinstance(info.get("dtype"), str) and ints(info.get("shape"))
            and ints(info.get("data_offsets")) and len(info["data_offsets"]) == 2)


def _edit_header(header: dict, rng: np.random.Generator) -> dict | str:
    """One targeted edit of the parsed header (a dict), or a JSON text with what a dict cannot hold."""
    names = [k for k, v in header.items() if k != "__metadata__" and _sound(v)]
    kind = int(rng.integers(11))
    if kind == 0 or not names:  # generic JSON mutation
        return mutate_json(header, rng, edits=int(rng.integers(1, 4)))
    name = names[int(rng.integers(len(names)))]
    info = header[name]
    if kind == 1:  # shift one offset a little
        i = int(rng.integers(2))
        info["data_offsets"][i] = max(0, info["data_offsets"][i] + int(rng.integers(-9, 10)))
    elif kind == 2:  # swap the offsets of two tensors
        other = header[names[int(rng.integers(len(names)))]]  # (possibly itself)
        info["data_offsets"], other["data_offsets"] = other["data_offsets"], info["data_offsets"]
    elif kind == 3:  # shape edits, with the dims that overflow (the order of a 0 matters)
        shape = info["shape"]
        op = int(rng.integers(4))
        big = [0, 1, 2, 2**32, 2**62, 2**63, 2**64 - 1, 2**64][int(rng.integers(8))]
        if op == 0 and shape:
            shape[int(rng.integers(len(shape)))] += int(rng.integers(-2, 3))
        elif op == 1:
            shape.insert(int(rng.integers(len(shape) + 1)), big)
        elif op == 2 and shape:
            del shape[int(rng.integers(len(shape)))]
        else:
            info["shape"] = [big, 2**32, 2**32][: int(rng.integers(1, 4))] + ([0] if rng.integers(2) else [])
            if rng.integers(2):
                info["shape"].reverse()
            info["data_offsets"][1] = info["data_offsets"][0]
    elif kind == 4:  # another dtype the format knows (same width keeps the file valid), or a near miss
        codes = [*NAMES, "f32", "F8", "U1", "F8_E4M3FN", "Q7"]
        info["dtype"] = codes[int(rng.integers(len(codes)))]
    elif kind == 5:  # metadata: non-strings, odd strings, null, dropped
        op = int(rng.integers(4))
        if op == 0:
            header["__metadata__"] = [None, [], {}, "x", 1, {"k": 1}, {"k": None}][int(rng.integers(7))]
        elif op == 1:
            if not isinstance(header.get("__metadata__"), dict):
                header["__metadata__"] = {}
            header["__metadata__"][ODD_STRINGS[int(rng.integers(len(ODD_STRINGS)))]] = "v"
        elif op == 2:
            header["__metadata__"] = {"k": ODD_STRINGS[int(rng.integers(len(ODD_STRINGS)))]}
        else:
            header.pop("__metadata__", None)
    elif kind == 6:  # unknown fields (ignored by the library once parsed): values, deep nesting, surrogates
        value = [1, None, "x", "\ud800", {"a": [1, 2]}, 1e308, "@@DEEP@@"][int(rng.integers(7))]
        info[ODD_STRINGS[int(rng.integers(len(ODD_STRINGS)))] + "extra"] = value
        if value == "@@DEEP@@":  # around serde_json's recursion limit (the entry itself is 2 levels deep)
            return _dumps(header, rng).replace('"@@DEEP@@"', _nested(int(rng.integers(120, 131))))
    elif kind == 7:  # the other spellings serde reads: [dtype, shape, offsets] and {"F32": null}
        if rng.integers(2):
            seq = [info["dtype"], info["shape"], info["data_offsets"]]
            header[name] = seq[: int(rng.integers(2, 5))] if rng.integers(3) == 0 else seq
        else:
            info["dtype"] = {info["dtype"]: [None, None, [], {}, 0][int(rng.integers(5))]}
    elif kind == 8:  # a repeated key, first (shadowed) or last (winning), at the top or inside an entry
        text = _dumps(header, rng)
        where = int(rng.integers(3))
        if where == 0:  # a repeated tensor or __metadata__
            key = [name, "__metadata__"][int(rng.integers(2))]
            value = mutate_json(header.get(key, {}), rng) if rng.integers(2) else header.get(key, {})
            dup = f"{json.dumps(key)}:{json.dumps(value)}"
        else:  # a repeated field
            field = ["dtype", "shape", "data_offsets", "extra"][int(rng.integers(4))]
            dup = f"{json.dumps(field)}:{json.dumps(info.get(field, 1))}"
            entry = json.dumps(info)
            repeated = "{" + dup + "," + entry[1:] if rng.integers(2) else entry[:-1] + "," + dup + "}"
            header[name] = "@@"
            text = _dumps(header, rng).replace('"@@"', repeated)
            return text
        return "{" + dup + "," + text[1:] if rng.integers(2) else text[:-1] + "," + dup + "}"
    elif kind == 9:  # numbers as serde reads them: -0, 1e0, beyond u64, beyond f64
        spelled = ["-0", "0.0", "1e0", "18446744073709551616", "1" * 310, "1e400", "NaN", "-1"][int(rng.integers(8))]
        info["data_offsets"][0] = "@@NUM@@"
        return _dumps(header, rng).replace('"@@NUM@@"', spelled)
    else:  # rename a tensor (odd strings, collisions)
        header[ODD_STRINGS[int(rng.integers(len(ODD_STRINGS)))] + name[: int(rng.integers(2))]] = header.pop(name)
    return header


def _case(rng: np.random.Generator) -> bytes:
    """A mutated copy of VALID."""
    kind = int(rng.integers(4))
    if kind == 0:  # raw bytes
        blob = VALID
        for _ in range(int(rng.integers(1, 4))):
            blob = mutate_bytes(blob, rng)
        return blob
    header, data = _split(VALID)
    (n,) = struct.unpack("<Q", VALID[:8])
    if kind == 1:  # the length field
        length = [n + int(rng.integers(-9, 10)), 0, 2, len(VALID) - 8, len(VALID) - 7, 100_000_000,
                  100_000_001, 2**63, 2**64 - 1, int(rng.integers(2**63))][int(rng.integers(10))]
        return struct.pack("<Q", length) + VALID[8:]
    edited = header
    for _ in range(int(rng.integers(1, 3))):
        edited = _edit_header(edited, rng) if isinstance(edited, dict) else edited
    text = edited if isinstance(edited, str) else _dumps(edited, rng)
    pad = int(rng.integers(6))
    if pad == 1:
        text += " " * int(rng.integers(1, 9))
    elif pad == 2:
        text = "\n\t " + text + "\r\n"
    elif pad == 3:
        text += ["\x00", "x", "}", "\u00a0"][int(rng.integers(4))]
    if kind == 3:  # and the data: trailing or missing bytes
        data = data + b"\0" * int(rng.integers(1, 5)) if rng.integers(2) else data[: -int(rng.integers(1, 5))]
    length = None if rng.integers(5) else max(0, len(text.encode("utf-8", "surrogatepass")) + int(rng.integers(-2, 3)))
    return _join(text, data, length)


def _library_view(path: Path, blob: bytes) -> dict | None:
    """What the safetensors library makes of the file: None if it refuses to open it, else
    {"metadata": ..., "tensors": {name: (code, shape, bytes, numpy array or the exception get_tensor raised)}}."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            arrays = {}
            for key in f.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                try:
                    arrays[key] = f.get_tensor(key)
                except Exception as e:  # NumPy lacks F8/F4/F6; numpy.zeros refuses shape (0, 2**40, 2**40)
                    arrays[key] = e
    except SafetensorError:
        return None
    raw = {name: (t["dtype"], tuple(t["shape"]), bytes(t["data"])) for name, t in deserialize(blob)}
    assert sorted(raw) == sorted(arrays)
    return {"metadata": metadata, "tensors": {k: (*raw[k], arrays[k]) for k in raw}}


def check_against_library(path: Path, blob: bytes) -> None:
    """The differential check on one file: raises WeightsError when (and only when) the library refuses it."""
    path.write_bytes(blob)
    lib = _library_view(path, blob)
    try:
        ckpt = open_checkpoint(path)
    except WeightsError as e:
        assert lib is None, f"isoform refuses a file the safetensors library reads: {e}"
        assert str(path) in str(e), f"message does not name the file: {e}"
        assert "rejected by the safetensors library" not in str(e), f"only the library's own check caught it: {e}"
        raise
    with ckpt:
        assert lib is not None, f"isoform reads a file the safetensors library refuses: header {blob[:200]!r}"
        assert sorted(ckpt.keys()) == sorted(lib["tensors"])
        assert ckpt.metadata == lib["metadata"]
        for key, (code, shape, data, array) in lib["tensors"].items():
            assert ckpt.shape(key) == shape and ckpt.nbytes(key) == len(data), key
            assert ckpt.dtype(key) == NAMES[code], (key, code, ckpt.dtype(key))
            try:
                got = ckpt.get(key)
            except WeightsError as e:
                assert code in ("F4", "F6_E2M3", "F6_E3M2") or 0 in shape, f"{key}: {e}"
                assert isinstance(array, Exception), f"the library reads {key} but isoform does not: {e}"
                continue
            assert got.shape == shape and got.dtype.name == NAMES[code] and got.tobytes() == data, key
            if not isinstance(array, Exception):
                assert array.dtype == got.dtype and array.tobytes() == got.tobytes(), key


def test_fuzz_safetensors_against_library(tmp_path):
    counter = itertools.count()

    def target(rng: np.random.Generator) -> None:
        path = tmp_path / f"case{next(counter)}.safetensors"  # a fresh file: earlier mappings stay valid
        try:
            check_against_library(path, _case(rng))
        finally:
            path.unlink(missing_ok=True)

    report = fuzz("safetensors", target)
    print(report)
    assert report.accepted > 0 and report.rejected > 0, report
    assert set(report.errors) == {"WeightsError"}, report


def test_valid_file_reads_like_the_library(tmp_path):
    check_against_library(tmp_path / "m.safetensors", VALID)
    with open_checkpoint(tmp_path / "m.safetensors") as ckpt:
        assert ckpt.metadata == META and sorted(ckpt.keys()) == sorted(TENSORS)


T = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
T_TEXT = json.dumps(T)


def _zero(**kw) -> dict:
    return {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} | kw


@pytest.mark.parametrize(
    "text, data, accepted, message",
    [
        # what the library refuses
        (json.dumps({"a": T}), b"\0" * 9, False, "1 bytes after tensor 'a' at data byte 8 belong to no tensor"),
        (json.dumps({}), b"x", False, "belong to no tensor"),
        (json.dumps({"a": T, "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}), b"\0" * 16, False,
         "tensor 'b' (data_offsets [12, 16]) leaves a gap: data bytes 8..12 belong to no tensor"),
        (json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}), b"\0" * 8, False,
         "must start at byte 0"),
        (json.dumps({"a": T, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}), b"\0" * 8, False,
         "overlaps tensor 'a'"),
        (json.dumps({"__metadata__": {"n": 1}, "a": T}), b"\0" * 8, False, "__metadata__ value for 'n' is 1"),
        (json.dumps({"__metadata__": {"n": None}}), b"", False, "not a string"),
        (json.dumps({"__metadata__": []}), b"", False, "__metadata__ is a JSON array"),
        ('{"__metadata__":{},"__metadata__":{}}', b"", False, "__metadata__ twice"),
        ('{"__metadata__":{"k":1,"k":"v"}}', b"", False, "__metadata__ value for 'k' is 1"),
        ('{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', b"\0" * 8, False, "'dtype' twice"),
        ('{"a":{"dtype":"Q"},"a":' + T_TEXT + "}", b"\0" * 8, False, "entry for tensor 'a' has no 'shape'"),
        (json.dumps({"a": T}) + "\0", b"\0" * 8, False, "not valid JSON"),
        ('{"__metadata__":{"k":"\\ud800"}}', b"", False, "unpaired UTF-16 surrogate"),
        ('{"a":' + json.dumps(_zero())[:-1] + ',"x":"\\udc00"}}', b"", False, "unpaired UTF-16 surrogate"),
        ('{"a":' + json.dumps(_zero())[:-1] + ',"x":' + _nested(126) + "}}", b"", False, "128 levels deep"),
        ('{"a":' + json.dumps(_zero())[:-1] + ',"x":1e400}}', b"", False, "out of range"),
        ('{"a":' + json.dumps(_zero())[:-1] + ',"x":[' + "9" * 400 + "]}}", b"", False, "out of range"),
        ('{"a":' + json.dumps(_zero())[:-1] + ',"x":NaN}}', b"", False, "not valid JSON"),
        ('{"a":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}', b"", False, "invalid shape [-0.0]"),
        ('{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}', b"\0" * 4, False, "invalid shape [1.0]"),
        (json.dumps({"a": _zero(shape=[2**64])}), b"", False, "invalid shape"),
        (json.dumps({"a": _zero(shape=[2**32, 2**32, 0])}), b"", False, "element count of shape"),
        (json.dumps({"a": _zero(shape=[2**62])}), b"", False, "overflows 64 bits"),
        (json.dumps({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}), b"\0\0", False, "not whole bytes"),
        (json.dumps({"a": ["F32", [2]]}), b"\0" * 8, False, "a list of 2 items"),
        (json.dumps({"a": dict(T, dtype={"F32": []})}), b"\0" * 8, False, "unknown dtype"),
        (json.dumps({"a": dict(T, dtype="f32")}), b"\0" * 8, False, "unknown dtype 'f32'"),
        ("[]", b"", False, "header is a JSON array"),
        ("\ufeff{}", b"", False, "not valid JSON"),
        # what the library reads
        (json.dumps({"a": T}) + "        ", b"\0" * 8, True, None),  # trailing-space padding, as save() writes
        ("\n\t " + json.dumps({"a": T}) + "\r\n", b"\0" * 8, True, None),
        ("{}", b"", True, None),
        (json.dumps({"__metadata__": None, "a": T}), b"\0" * 8, True, None),
        ('{"__metadata__":{"k":"1","k":"2"}}', b"", True, None),
        ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]},"a":' + T_TEXT + "}", b"\0" * 8, True, None),
        ('{"__metadata__":{"k":"\\ud83d\\ude00"}}', b"", True, None),
        ('{"a":' + json.dumps(_zero())[:-1] + ',"x":' + _nested(125) + ',"x":' + "9" * 300 + "}}", b"", True, None),
        (json.dumps({"a": _zero(shape=[0, 2**32, 2**32])}), b"", True, None),  # checked product: 0 first
        ('{"a":' + json.dumps(_zero())[:-1] + ',"x":-0}}', b"", True, None),
        (json.dumps({"a": _zero(), "b": _zero(), "c": T}), b"\0" * 8, True, None),
        (json.dumps({"a": ["F32", [2], [0, 8]]}), b"\0" * 8, True, None),  # serde reads a struct from a list
        (json.dumps({"a": dict(T, dtype={"F32": None})}), b"\0" * 8, True, None),  # and a unit variant from a map
        (json.dumps({"a": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]},
                     "b": {"dtype": "C64", "shape": [1], "data_offsets": [2, 10]},
                     "c": {"dtype": "F8_E8M0", "shape": [2], "data_offsets": [10, 12]}}), b"\x11" * 12, True, None),
    ],
)
def test_regressions_match_library(tmp_path, text, data, accepted, message):
    path = tmp_path / "model.safetensors"
    if accepted:
        check_against_library(path, _join(text, data))
        return
    with pytest.raises(WeightsError) as err:
        check_against_library(path, _join(text, data))
    assert message in str(err.value) and str(path) in str(err.value)


def test_header_length_field(tmp_path):
    path = tmp_path / "model.safetensors"
    for blob, message in [
        (b"\1\2", "too short"),
        (struct.pack("<Q", 100_000_001) + b"{}", "exceeds the safetensors limit of 100000000 bytes"),
        (struct.pack("<Q", 2**64 - 1) + b"{}", "exceeds the safetensors limit"),
        (struct.pack("<Q", 3) + b"{}", "beyond the end of the 10-byte file"),
        (struct.pack("<Q", 1) + b"\xff", "not valid UTF-8"),
        (struct.pack("<Q", 0), "not valid JSON"),
    ]:
        with pytest.raises(WeightsError, match=message):
            check_against_library(path, blob)
