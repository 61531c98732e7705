"""All-or-nothing writes of a set of files into a directory.

    with staged_directory(directory) as stage:
        write_everything_into(stage)          # a fresh hidden directory inside `directory`

On success every file in the stage replaces its namesake in ``directory`` (``os.replace``: each file
is swapped whole, readers never see a half-written one) and files the ``stale`` rule names that this
write did not produce are removed (the shards of an earlier, differently sharded save). On failure
the stage is deleted and ``directory`` is as it was; a directory created for the write is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


@contextlib.contextmanager
def staged_directory(directory: str | os.PathLike[str],
                     stale: Callable[[Path], Iterable[Path]] | None = None) -> Iterator[Path]:
    """Yield a staging directory whose files are moved into ``directory`` when the block succeeds
    (see the module docstring)."""
    target = Path(directory)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".isoform-staging-", dir=target))
    try:
        yield stage
        written = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
        old = set(stale(target)) if stale else set()
        for rel in written:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, target / rel)
        for path in old - {target / rel for rel in written}:
            path.unlink(missing_ok=True)
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def moved(paths: Iterable[Path], stage: Path, directory: str | os.PathLike[str]) -> list[Path]:
    """Where ``paths`` written under ``stage`` are once `staged_directory` has moved them."""
    return [Path(directory) / Path(p).relative_to(stage) for p in paths]


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all: a temporary file beside it, then
    ``os.replace``. Creates the parent directory; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
