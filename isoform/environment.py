"""Process settings isoform applies before it first imports a framework (imports nothing of isoform)."""

from __future__ import annotations

import os


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ log lines (absl's pre-init warning, CPU feature guard, oneDNN notes) off
    stderr: ``TF_CPP_MIN_LOG_LEVEL=2`` unless the user set it. Call before isoform first imports TF."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
