"""isoform.weights readers: header-only metadata, memory mapping, corrupt files, unsafe pickles."""

from __future__ import annotations

import json
import mmap
import struct
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from isoform.errors import WeightsError
from isoform.weights import Rename, WeightMap, cast, load_params, open_checkpoint, parse_size

TENSORS = {
    "a.weight": np.arange(24, dtype=np.float32).reshape(4, 6),
    "b.bias": np.linspace(-1, 1, 7).astype(np.float16),
    "c.ids": np.arange(3, dtype=np.int64),
    "d.mask": np.array([True, False]),
    "e.bf16": np.arange(8, dtype=np.float32).astype(ml_dtypes.bfloat16),
}


@pytest.fixture
def safe_dir(tmp_path):
    save_file(TENSORS, str(tmp_path / "model.safetensors"))
    return tmp_path


def test_header_metadata_and_memory_mapped_get(safe_dir):
    with open_checkpoint(safe_dir) as ckpt:
        assert sorted(ckpt.keys()) == sorted(TENSORS)
        assert ckpt.shape("a.weight") == (4, 6) and ckpt.dtype("a.weight") == "float32"
        assert ckpt.dtype("e.bf16") == "bfloat16" and ckpt.dtype("d.mask") == "bool"
        for key, ref in TENSORS.items():
            got = ckpt.get(key)
            assert got.dtype == ref.dtype
            np.testing.assert_array_equal(got, ref)
        arr = ckpt.get("a.weight")
        assert not arr.flags.writeable and not arr.flags.owndata
        base = arr
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)  # a view of the mapped file, not a copy
        with pytest.raises(WeightsError, match="nope"):
            ckpt.get("nope")
    np.testing.assert_array_equal(arr, TENSORS["a.weight"])  # still valid after close


def test_no_checkpoint_lists_names(tmp_path):
    with pytest.raises(WeightsError) as err:
        open_checkpoint(tmp_path)
    for name in ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json", str(tmp_path)]:
        assert name in str(err.value)


def _header(path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write(path, header: dict | bytes, data: bytes) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "truncated"),
        ("tiny", "too short"),
        ("header_len", "beyond the end"),
        ("bad_json", "not valid JSON"),
        ("bad_dtype", "unknown dtype 'Q7'"),
        ("bad_offsets", "needs 96 bytes"),
        ("bad_shape", "invalid shape"),
        ("overlap", "overlap"),
        ("trailing_bytes", "4 bytes after tensor"),
        ("gap", "leaves a gap"),
        ("meta_not_string", "__metadata__ value for 'n' is 1, not a string"),
        ("header_limit", "exceeds the safetensors limit of 100000000 bytes"),
    ],
)
def test_corrupt_safetensors_refused_at_open(safe_dir, damage, message):
    path = safe_dir / "model.safetensors"
    header, data = _header(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-20])
    elif damage == "tiny":
        path.write_bytes(b"\x01\x02")
    elif damage == "header_len":
        path.write_bytes(struct.pack("<Q", 10**6) + b"{}")  # under the 100 MB limit, past the end
    elif damage == "bad_json":
        _write(path, b'{"a.weight": {"dtype": "F32", ', data)
    elif damage == "bad_dtype":
        header["c.ids"]["dtype"] = "Q7"
        _write(path, header, data)
    elif damage == "bad_offsets":
        header["a.weight"]["data_offsets"][1] -= 4
        _write(path, header, data)
    elif damage == "overlap":
        begin = header["a.weight"]["data_offsets"][0] + 8  # b.bias moved into a.weight, which precedes it
        header["b.bias"]["data_offsets"] = [begin, begin + 14]
        _write(path, header, data)
    elif damage == "bad_shape":
        header["a.weight"]["shape"] = [4, -6]
        _write(path, header, data)
    elif damage == "trailing_bytes":  # the safetensors library refuses bytes no tensor covers
        _write(path, header, data + b"\0" * 4)
    elif damage == "gap":
        last = max(header.values(), key=lambda v: v.get("data_offsets", [0, 0])[1])
        last["data_offsets"] = [o + 8 for o in last["data_offsets"]]
        _write(path, header, data + b"\0" * 8)
    elif damage == "meta_not_string":
        header["__metadata__"] = {"n": 1}
        _write(path, header, data)
    elif damage == "header_limit":
        path.write_bytes(struct.pack("<Q", 100_000_001) + b"{}")
    with pytest.raises(WeightsError) as err:
        open_checkpoint(safe_dir)
    assert message in str(err.value) and str(path) in str(err.value)


def test_padded_header_and_metadata_accepted(safe_dir):
    path = safe_dir / "model.safetensors"
    header, data = _header(path)
    header["__metadata__"] = {"format": "np"}
    _write(path, json.dumps(header).encode() + b"       ", data)  # space padding, as safetensors writes
    with open_checkpoint(safe_dir) as ckpt:
        assert ckpt.metadata == {"format": "np"} and sorted(ckpt.keys()) == sorted(TENSORS)
        np.testing.assert_array_equal(ckpt.get("a.weight"), TENSORS["a.weight"])


def test_sharded_index_with_missing_shard(safe_dir):
    (safe_dir / "model.safetensors").rename(safe_dir / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "z": "model-00002-of-00002.safetensors"}}
    (safe_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(WeightsError, match=r"model-00002-of-00002\.safetensors"):
        open_checkpoint(safe_dir)


torch = pytest.importorskip("torch")


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_bin_state_dict_and_sharded_index(tmp_path):
    sd = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in TENSORS.items() if k != "e.bf16"}
    sd["e.bf16"] = torch.arange(8, dtype=torch.bfloat16)
    torch.save({k: sd[k] for k in ("a.weight", "b.bias")}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({k: sd[k] for k in ("c.ids", "d.mask", "e.bf16")}, tmp_path / "pytorch_model-00002-of-00002.bin")
    wmap = {k: f"pytorch_model-0000{1 if k in ('a.weight', 'b.bias') else 2}-of-00002.bin" for k in sd}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": wmap}))
    with open_checkpoint(tmp_path) as ckpt:
        assert sorted(ckpt.keys()) == sorted(sd) and ckpt.shape("a.weight") == (4, 6)
        assert ckpt.dtype("e.bf16") == "bfloat16"
        np.testing.assert_array_equal(ckpt.get("e.bf16"), TENSORS["e.bf16"])
        np.testing.assert_array_equal(ckpt.get("a.weight"), TENSORS["a.weight"])


def test_bin_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"a.weight": torch.zeros(2), "evil": Payload(str(marker))}, tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="refused: not a plain state dict"):
        open_checkpoint(tmp_path)
    assert not marker.exists()
    torch.load(tmp_path / "pytorch_model.bin", weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.exists()


def test_bin_of_non_tensors_is_refused(tmp_path):
    torch.save({"a.weight": [1, 2, 3]}, tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="refused: not a plain state dict"):
        open_checkpoint(tmp_path)


def test_bin_without_torch_says_what_to_install(tmp_path, monkeypatch):
    torch.save({"a": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(WeightsError) as err:
        open_checkpoint(tmp_path)
    assert "pip install isoform[torch]" in str(err.value) and "safetensors" in str(err.value)


def test_loading_safetensors_never_imports_torch(safe_dir):
    code = (
        "import sys; from isoform.weights import *\n"
        f"ck = open_checkpoint({str(safe_dir)!r})\n"
        "p = load_params(ck, WeightMap([Rename('{n:.+}', '{n}')]), {k: ck.shape(k) for k in ck.keys()}, 'bfloat16')\n"
        "assert str(p['a.weight'].dtype) == 'bfloat16'\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_identity_map_streams_views(safe_dir):
    with open_checkpoint(safe_dir) as ckpt:
        got = load_params(ckpt, WeightMap([Rename("{n:.+}", "{n}")]), {k: ckpt.shape(k) for k in ckpt})
    assert not got["a.weight"].flags.owndata  # no cast, no transform: the mapped data itself, no copy
    assert got["c.ids"].dtype == np.int64


def test_cast_and_sizes():
    x = np.array([1.5, -2.25], np.float32)
    assert cast(x, "bf16").dtype == ml_dtypes.bfloat16 and cast(x, None) is x and cast(x, "float32") is x
    assert cast(np.arange(3), "float16").dtype == np.int64
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 * 2**30 and parse_size(100) == 100
    with pytest.raises(WeightsError):
        parse_size("lots")
    with pytest.raises(WeightsError, match="float64"):
        load_params(None, WeightMap([]), {}, dtype="float64")


def test_save_bf16_and_load_from_path_with_param_objects(tmp_path):
    from types import SimpleNamespace

    from isoform.ir.dtypes import DType
    from isoform.weights import save_params

    w = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4).astype(ml_dtypes.bfloat16)
    wm = WeightMap([Rename("model.w", "w")])
    save_params(tmp_path, {"w": w}, wm, {"model_type": "toy"})
    assert json.loads((tmp_path / "config.json").read_text()) == {"model_type": "toy"}
    got = load_params(tmp_path, wm, {"w": SimpleNamespace(shape=(3, 4), dtype=DType.bf16)})
    assert got["w"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got["w"], w)
