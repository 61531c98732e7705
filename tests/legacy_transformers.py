"""transformers 4.57.6, for the references transformers 5 dropped (question-answering, text2text-generation,
summarization, translation): installed once per machine into a side folder and run in a subprocess, with
that folder first on ``sys.path`` and everything else (torch, tokenizers, huggingface_hub) from this venv."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

VERSION = "4.57.6"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "isoform-tests" / f"transformers-{VERSION}"

# 4.57.6 pins tokenizers<=0.23.0 and huggingface-hub<1.0 at import; it runs with this venv's newer ones, so
# the prelude drops those two pins (nothing else). USE_TF=0: 4.57.6 refuses Keras 3 when it sees TensorFlow.
PRELUDE = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location(
    "transformers.dependency_versions_table", sys.argv[1] + "/transformers/dependency_versions_table.py")
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)
table.deps.update({"tokenizers": "tokenizers", "huggingface-hub": "huggingface-hub"})
sys.modules[spec.name] = table
import transformers
assert transformers.__version__ == sys.argv[3], transformers.__file__
transformers.logging.set_verbosity_error()
with open(sys.argv[2]) as f:
    payload = json.load(f)
"""
EPILOGUE = """
with open(sys.argv[2], "w") as f:
    json.dump(result, f, default=lambda x: x.tolist())
"""


def legacy_dir() -> Path:
    """The side folder holding transformers 4.57.6 (``pip install --no-deps --target``, once per machine,
    under a lock so parallel workers wait for one install). Skips the test when the install fails, except
    under ``CI``, where the reference must run."""
    marker = CACHE / ".installed"
    if marker.exists():
        return CACHE
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / f"{CACHE.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            shutil.rmtree(CACHE, ignore_errors=True)
            proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                                   str(CACHE), f"transformers=={VERSION}"], capture_output=True, text=True)
            if proc.returncode:
                shutil.rmtree(CACHE, ignore_errors=True)
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                reason = f"cannot install transformers=={VERSION} into {CACHE} (offline?): {last}"
                if os.environ.get("CI"):
                    pytest.fail(reason)
                pytest.skip(reason)
            marker.touch()
    return CACHE


def run_legacy(code: str, payload: dict) -> Any:
    """Run ``code`` under transformers 4.57.6 in a fresh interpreter: it reads ``payload`` (JSON-able) and
    sets ``result`` (JSON-able, NumPy scalars and arrays allowed), which is returned."""
    with tempfile.TemporaryDirectory() as tmp:
        exchange = Path(tmp) / "exchange.json"
        exchange.write_text(json.dumps(payload))
        env = {**os.environ, "USE_TF": "0", "USE_FLAX": "0", "USE_TORCH": "1", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run([sys.executable, "-c", PRELUDE + code + EPILOGUE, str(legacy_dir()), str(exchange),
                               VERSION], capture_output=True, text=True, cwd=tmp, env=env)
        if proc.returncode:
            raise RuntimeError(f"transformers {VERSION} reference failed:\n{proc.stderr[-4000:]}")
        return json.loads(exchange.read_text())
