"""Checkpoint readers: memory-mapped safetensors (single or sharded) and legacy ``pytorch_model.bin``.

``open_checkpoint(directory)`` picks the file the way ``transformers`` does and returns a
:class:`Checkpoint`: names, shapes and dtypes come from headers without reading tensor data; ``get``
returns one tensor at a time as a read-only NumPy array backed by the memory-mapped file.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WeightsError
from .dtypes import SAFETENSORS_DTYPES, dtype_name, to_numpy_dtype

SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_SINGLE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
_HEADER_LIMIT = 100 * 1024 * 1024  # the safetensors library refuses headers above 100 MB too


class Checkpoint:
    """A set of named tensors on disk. Use as a context manager, or call :meth:`close`.

    ``keys()``, ``shape(key)`` and ``dtype(key)`` read only headers; ``get(key)`` reads one tensor.
    """

    files: list[Path]
    _index: dict[str, Any]  # name -> what the subclass needs to find the tensor

    def keys(self) -> list[str]:
        """Tensor names, in file order."""
        return list(self._index)

    def _lookup(self, key: str) -> Any:
        try:
            return self._index[key]
        except KeyError:
            raise WeightsError(f"tensor {key!r} is not in checkpoint {', '.join(map(str, self.files))}") from None

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape of ``key`` from the header, without reading data."""
        raise NotImplementedError

    def dtype(self, key: str) -> str:
        """NumPy dtype name of ``key`` (``float32``, ``bfloat16``, ``int64``...), without reading data."""
        raise NotImplementedError

    def get(self, key: str) -> np.ndarray:
        """The tensor ``key`` as a read-only NumPy array (memory-mapped when the format allows)."""
        raise NotImplementedError

    @property
    def metadata(self) -> dict[str, str]:
        """File-level metadata (safetensors ``__metadata__``); empty for other formats."""
        return {}

    def nbytes(self, key: str) -> int:
        """Size of tensor ``key`` in bytes."""
        return int(np.prod(self.shape(key), dtype=np.int64)) * to_numpy_dtype(self.dtype(key)).itemsize

    def release(self, key: str) -> None:
        """Drop the resident pages of ``key`` after it was copied out (loading streams, so the
        mapped file does not add to peak memory); arrays already returned stay valid."""

    def close(self) -> None:
        """Release file handles and mappings (arrays already returned stay valid)."""

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SafetensorsFile:
    """One ``.safetensors`` file: header parsed and validated on open, data memory-mapped."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
        self.metadata: dict[str, str] = {}
        self._parse_header()
        self._mmap: mmap.mmap | None = None

    def _bad(self, what: str) -> WeightsError:
        return WeightsError(f"corrupt safetensors file {self.path}: {what}")

    def _parse_header(self) -> None:
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise self._bad(f"file is {size} bytes, too short for the 8-byte header length (truncated?)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise self._bad(f"header length {n} is beyond the end of the {size}-byte file (truncated?)")
            if n > _HEADER_LIMIT:
                raise self._bad(f"header length {n} exceeds the {_HEADER_LIMIT}-byte limit")
            raw = f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self._bad(f"header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise self._bad("header is not a JSON object")
        self.data_start = 8 + n
        data_size = size - self.data_start
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict):
            raise self._bad("__metadata__ is not an object")
        self.metadata = {str(k): str(v) for k, v in meta.items()}
        for key, info in header.items():
            self.entries[key] = self._entry(key, info, data_size)
        self.entries = dict(sorted(self.entries.items(), key=lambda kv: (kv[1][2], kv[1][3])))
        end, prev = 0, None
        for key, (_, _, begin, stop) in self.entries.items():
            if begin < end:
                raise self._bad(f"tensors {prev!r} and {key!r} overlap")
            end, prev = max(end, stop), key

    def _entry(self, key: str, info: Any, data_size: int) -> tuple[np.dtype, tuple[int, ...], int, int]:
        if not isinstance(info, dict):
            raise self._bad(f"entry for tensor {key!r} is not an object")
        code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if code not in SAFETENSORS_DTYPES:
            raise self._bad(f"tensor {key!r} has unknown dtype {code!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise self._bad(f"tensor {key!r} has invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise self._bad(f"tensor {key!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if end > data_size:
            raise self._bad(
                f"tensor {key!r} data ends at byte {end} but the file holds only {data_size} data bytes (truncated?)"
            )
        dt = SAFETENSORS_DTYPES[code]
        expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if end - begin != expected:
            raise self._bad(f"tensor {key!r} of shape {shape} and dtype {code} needs {expected} bytes, has {end - begin}")
        return dt, tuple(shape), begin, end

    def get(self, key: str) -> np.ndarray:
        dt, shape, begin, end = self.entries[key]
        if end == begin:
            return np.zeros(shape, dt)
        if self._mmap is None:
            with open(self.path, "rb") as f:
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        count = (end - begin) // dt.itemsize
        return np.frombuffer(self._mmap, dtype=dt, count=count, offset=self.data_start + begin).reshape(shape)

    def release(self, key: str) -> None:
        # MADV_DONTNEED on a read-only shared file mapping only unmaps pages: later reads fault them
        # back from the page cache, so views handed out stay valid
        _, _, begin, end = self.entries[key]
        if self._mmap is None or end == begin or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = (self.data_start + begin) // mmap.PAGESIZE * mmap.PAGESIZE
        self._mmap.madvise(mmap.MADV_DONTNEED, start, self.data_start + end - start)

    def close(self) -> None:
        if self._mmap is not None:
            # arrays handed out may still view the mapping; it then closes when they die
            with contextlib.suppress(BufferError):
                self._mmap.close()
            self._mmap = None


class SafetensorsCheckpoint(Checkpoint):
    """One or more ``.safetensors`` files (shards) read as a single checkpoint."""

    def __init__(self, files: list[Path]):
        self.files = list(files)
        self._index: dict[str, _SafetensorsFile] = {}
        self._shards = [_SafetensorsFile(p) for p in self.files]
        for shard in self._shards:
            for key in shard.entries:
                if key in self._index:
                    raise WeightsError(f"tensor {key!r} appears in both {self._index[key].path} and {shard.path}")
                self._index[key] = shard

    @property
    def metadata(self) -> dict[str, str]:
        """The ``__metadata__`` of the first file."""
        return self._shards[0].metadata if self._shards else {}

    def shape(self, key: str) -> tuple[int, ...]:
        return self._lookup(key).entries[key][1]

    def dtype(self, key: str) -> str:
        return dtype_name(self._lookup(key).entries[key][0])

    def get(self, key: str) -> np.ndarray:
        return self._lookup(key).get(key)

    def release(self, key: str) -> None:
        self._lookup(key).release(key)

    def close(self) -> None:
        for shard in self._shards:
            shard.close()


class TorchBinCheckpoint(Checkpoint):
    """Legacy ``pytorch_model.bin`` file(s), read with ``torch.load(weights_only=True, mmap=True)``."""

    def __init__(self, files: list[Path]):
        self.files = list(files)
        torch = _import_torch(self.files[0])
        self._index: dict[str, Any] = {}
        for path in self.files:
            state = _torch_load(torch, path)
            for key, value in state.items():
                if key in self._index:
                    raise WeightsError(f"tensor {key!r} appears twice in {', '.join(map(str, self.files))}")
                self._index[key] = value

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._lookup(key).shape)

    def dtype(self, key: str) -> str:
        return str(self._lookup(key).dtype).removeprefix("torch.")

    def get(self, key: str) -> np.ndarray:
        import torch

        t = self._lookup(key).detach()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(to_numpy_dtype("bfloat16"))
        return t.numpy()

    def close(self) -> None:
        self._index = {}


def _import_torch(path: Path) -> Any:
    try:
        import torch
    except ImportError:
        raise WeightsError(
            f"{path} is a legacy PyTorch checkpoint and reading it needs torch: `pip install isoform[torch]`, "
            "or convert it to model.safetensors"
        ) from None
    return torch


def _torch_load(torch: Any, path: Path) -> dict[str, Any]:
    import pickle

    refused = f"{path}: refused: not a plain state dict (only a dict of tensors is loaded; nothing was executed)"
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # pre-zipfile legacy format cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(f"{refused}: {str(e).splitlines()[0]}") from None
    except Exception as e:
        raise WeightsError(f"cannot read PyTorch checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(refused)
    return state


def _index_files(directory: Path, index_name: str) -> list[Path]:
    index = directory / index_name
    try:
        data = json.loads(index.read_text())
        weight_map = data["weight_map"]
        names = list(dict.fromkeys(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise WeightsError(f"cannot read checkpoint index {index}: {e}") from None
    files = []
    for name in names:
        p = directory / name
        if not isinstance(name, str) or Path(name).name != name or not p.is_file():
            raise WeightsError(f"checkpoint index {index} lists shard {name!r}, which is not a file in {directory}")
        files.append(p)
    return files


def open_checkpoint(directory: str | os.PathLike[str]) -> Checkpoint:
    """Open the checkpoint in ``directory``: ``model.safetensors``, else the sharded
    ``model.safetensors.index.json``, else ``pytorch_model.bin`` (or its index, needs torch).

    Safetensors headers are validated against the file size here, before any tensor is read.
    A path to a single ``.safetensors`` or ``.bin`` file is accepted too.
    """
    path = Path(directory)
    if path.is_file():
        return TorchBinCheckpoint([path]) if path.suffix == ".bin" else SafetensorsCheckpoint([path])
    if not path.is_dir():
        raise WeightsError(f"checkpoint directory {path} does not exist")
    if (path / SAFE_SINGLE).is_file():
        return SafetensorsCheckpoint([path / SAFE_SINGLE])
    if (path / SAFE_INDEX).is_file():
        return SafetensorsCheckpoint(_index_files(path, SAFE_INDEX))
    if (path / BIN_SINGLE).is_file():
        return TorchBinCheckpoint([path / BIN_SINGLE])
    if (path / BIN_INDEX).is_file():
        return TorchBinCheckpoint(_index_files(path, BIN_INDEX))
    raise WeightsError(
        f"no checkpoint in {path}: looked for {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE}, {BIN_INDEX}"
    )
