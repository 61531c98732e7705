"""Checkpoint readers: memory-mapped safetensors (single or sharded) and legacy ``pytorch_model.bin``.

``open_checkpoint(directory)`` picks the file the way ``transformers`` does and returns a
:class:`Checkpoint`: names, shapes and dtypes come from headers without reading tensor data; ``get``
returns one tensor at a time as a read-only NumPy array backed by the memory-mapped file. Headers are
parsed and validated, as strictly as the safetensors library does, by :mod:`.safetensors_header`.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WeightsError
from .dtypes import dtype_name, to_numpy_dtype
from .safetensors_header import _PACKED, _show, read_header

SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_SINGLE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"


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
    """One ``.safetensors`` file: header parsed and validated on open (:func:`read_header`), data memory-mapped."""

    def __init__(self, path: Path):
        self.path = path
        header = read_header(path)
        self.data_start = header.data_start
        # name -> (NumPy dtype, or None where the installed ml_dtypes lacks it; shape; begin; end)
        self.entries: dict[str, tuple[np.dtype | None, tuple[int, ...], int, int]] = header.entries
        self.codes: dict[str, str] = header.codes  # name -> safetensors dtype code
        self.metadata: dict[str, str] = header.metadata
        self._mmap: mmap.mmap | None = None

    def get(self, key: str) -> np.ndarray:
        dt, shape, begin, end = self.entries[key]
        code = self.codes[key]
        if code in _PACKED or dt is None:
            why = "it packs several elements per byte" if code in _PACKED else "the installed ml_dtypes lacks it"
            raise WeightsError(f"tensor {key!r} in {self.path} has dtype {code}, which isoform cannot read ({why})")
        if end == begin:
            try:
                return np.zeros(shape, dt)
            except (ValueError, OverflowError) as e:  # e.g. shape (0, 2**40, 2**40)
                raise WeightsError(f"tensor {key!r} in {self.path} of shape {_show(list(shape))} cannot be a "
                                   f"NumPy array ({e})") from None
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
        shard = self._lookup(key)
        dt = shard.entries[key][0]
        return shard.codes[key] if dt is None else dtype_name(dt)

    def nbytes(self, key: str) -> int:
        _, _, begin, end = self._lookup(key).entries[key]
        return end - begin

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
