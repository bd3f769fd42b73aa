"""Atomic training checkpoints (model, optimiser, scheduler, scaler, RNG, data position) and final weights."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stcn.atomic import temporary_sibling
from stcn.errors import UserError
from stcn.model.checkpoint import load_tensors, official_state_dict

CHECKPOINT = "checkpoint.pth"  # the latest training state in --out
WEIGHTS = "weights.pth"  # the final network, official format


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path` (mode from the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as f:
            writer = _Writer(f)
            try:
                torch.save(obj, writer)
            except RuntimeError:
                if writer.error is not None:  # torch wraps a failed write (disk full): the OSError is the cause
                    raise writer.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Writer:
    """A file for torch.save that keeps the OSError of a failed write (torch reports it as a RuntimeError)."""

    def __init__(self, f) -> None:
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA when present) generator states, in types `weights_only` loading allows."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved (CUDA only when both sides have it)."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    scaler,
    iteration: int,
    data_position: dict[str, Any],
    config: dict[str, Any],
) -> None:
    """Write the complete training state after `iteration` iterations (atomically)."""
    atomic_save(
        {
            "network": official_state_dict(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "iteration": iteration,
            "rng": rng_state(),
            "data": data_position,
            "config": config,
        },
        path,
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint written by `save_checkpoint`; a bad file is a user error.

    Loaded with `weights_only=True`: a file holding anything but tensors and plain containers (a crafted
    pickle that would run code, or a checkpoint of an older version) is refused, never executed.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint to resume from: {path}")
    state = load_tensors(path, lambda e: _refused(path, e))
    if not isinstance(state, dict) or not {"network", "optimizer", "iteration"} <= state.keys():
        raise UserError(f"not a training checkpoint (use --init for weights files): {path}")
    return state


def _refused(path: Path, e: Exception) -> UserError:
    """Why `load_checkpoint` cannot use `path`: objects outside the allowed types, or a truncated / foreign file."""
    if isinstance(e, pickle.UnpicklingError):
        return UserError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain containers "
            "(a foreign or older-version checkpoint); delete it or use a new --out"
        )
    return UserError(f"cannot read training checkpoint {path}: {str(e).splitlines()[0]}")


def save_weights(path: str | Path, model: torch.nn.Module) -> None:
    """The network alone as a plain state dict, loadable by the original eval scripts."""
    atomic_save(official_state_dict(model), path)
