"""Informative test checkpoints: random `transformers` models whose outputs expose wrong code.

A default-initialised model is a weak reference: biases and norm shifts are 0, norm scales 1, weight
matrices have std 0.02, so logits are ~1e-2, attention is nearly uniform, and a dropped bias, an
ignored norm weight or a swapped query/key map moves outputs by less than a 1e-4 tolerance.
`make_informative` perturbs a model so that every parameter matters: every tensor transformers
initialises to a constant (biases, norm weights, ``final_logits_bias``, ...) gets N(0, ``noise``)
added, and every other floating tensor with a smaller std than ``min_std`` (4x transformers'
default 0.02) is scaled up by at most ``scale`` towards it. Tensors already initialised wider (T5's
fan-in scaled matrices, sinusoidal tables) are left as they are, so outputs stay O(10) and an
absolute tolerance stays meaningful.

`save_informative` builds, perturbs, saves and *reloads* the model: tables that ``from_pretrained``
recomputes instead of reading (sinusoidal positions, ...) come back as transformers computes them,
and the checkpoint is saved again from the reloaded model, so file and reference always agree.

Needs torch and transformers (test dependencies); imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOISE = 0.3
SCALE = 4.0
MIN_STD = 0.08


def make_informative(model: Any, seed: int = 0, noise: float = NOISE, scale: float = SCALE,
                     min_std: float = MIN_STD) -> Any:
    """Perturb ``model`` (a ``torch.nn.Module``) in place, see the module docstring; returns it.
    Shared (tied) tensors are perturbed once; integer buffers and non-persistent buffers (which
    ``save_pretrained`` does not write) are left alone."""
    import torch

    saved = set(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    tensors = [*model.named_parameters(), *model.named_buffers()]
    with torch.no_grad():
        for name, tensor in tensors:
            if name not in saved or not tensor.is_floating_point() or id(tensor) in seen or tensor.numel() == 0:
                continue
            seen.add(id(tensor))
            flat = tensor.reshape(-1)
            if bool((flat == flat[0]).all()):
                tensor.add_(noise * torch.randn(tensor.shape, generator=generator, dtype=torch.float32).to(tensor.dtype))
            else:
                std = float(tensor.float().std()) if tensor.numel() > 1 else abs(float(flat[0]))
                tensor.mul_(min(scale, max(1.0, min_std / max(std, 1e-12))))
    return model


def save_informative(cls: Any, config: Any, path: str | Path, seed: int = 0) -> Any:
    """``cls(config)`` with torch seeded by ``seed``, made informative, saved to ``path`` with
    ``save_pretrained``, reloaded with ``from_pretrained`` (the reference a test compares against,
    in eval mode) and, where loading recomputed any tensor, saved again from the reloaded model."""
    import torch

    torch.manual_seed(seed)
    model = make_informative(cls(config).eval(), seed)
    model.save_pretrained(path)
    reloaded = cls.from_pretrained(path).eval()
    ours, theirs = model.state_dict(), reloaded.state_dict()
    if ours.keys() != theirs.keys() or any(not torch.equal(ours[k], theirs[k]) for k in ours):
        reloaded.save_pretrained(path)
    return reloaded


__all__ = ["MIN_STD", "NOISE", "SCALE", "make_informative", "save_informative"]
