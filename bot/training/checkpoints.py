"""Checkpoint files: written atomically with a `.json` of metadata beside them, read back safely.

Reading never runs code from the file: torch loads it with `weights_only=True`, which accepts tensors, numpy
arrays and plain data only, so a foreign pickle is refused rather than executed. Whatever is wrong with a file
(missing, corrupt, truncated, foreign, or written for another network) is a CheckpointError whose message is
one line naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bot.training.config import AGENT_FIELDS, TrainingConfig, TrainingConfigError, validate

try:  # numpy 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

# What a checkpoint holds besides tensors and plain data: the replay buffer's numpy arrays.
SAFE_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    _reconstruct,
    *{type(np.dtype(kind)) for kind in ("float32", "float64", "int64", "int32", "bool")},
]
TRAINING_KEYS = ("agent", "episode", "history", "config")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message is one line and names the file."""


def read_state(path: str | Path) -> dict[str, Any]:
    """The dictionary a checkpoint holds, loaded without running any code it may carry."""
    name = str(path)
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {name!r} does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(path, weights_only=True)
    except Exception as exc:  # torch says "corrupt" in many ways: zip, EOF, pickle opcodes, tensor storage
        if "GLOBAL" in str(exc):  # a class or function to call: what a foreign or hostile pickle holds
            raise CheckpointError(
                f"checkpoint {name!r} holds Python objects no checkpoint of this trainer has; refused unread "
                "(was it written by another program?)"
            ) from None
        raise CheckpointError(f"checkpoint {name!r} is corrupt or truncated: {_reason(exc)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {name!r} is not a checkpoint of this trainer (it holds a {type(state).__name__})"
        )
    return state


def _reason(exc: Exception) -> str:
    """torch's own words, without its advice to load the file unsafely."""
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    skip = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(skip)]
    return lines[0][:160] if lines else type(exc).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Trainer's checkpoint (what `Trainer.load_checkpoint` and `bot train --resume` read), checked."""
    state = read_state(path)
    missing = [key for key in TRAINING_KEYS if key not in state]
    if missing:
        what = "an agent's weights (DQNAgent.save), not a training checkpoint" if "online" in state else "foreign"
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a checkpoint of this trainer ({what}; no {missing[0]!r})"
        )
    return state


def config_from_checkpoint(state: dict[str, Any], path: str | Path) -> TrainingConfig:
    """The configuration a checkpoint was trained with: its Trainer's settings and its agent's own."""
    values = dict(state["config"]) if isinstance(state["config"], dict) else {}
    values.update({k: v for k, v in state.get("agent_config", {}).items() if k in AGENT_FIELDS})
    try:
        return validate(values, source=f"checkpoint {str(path)!r}")
    except TrainingConfigError as exc:
        raise CheckpointError(str(exc)) from None


def describe(network: dict[str, Any]) -> str:
    """`60 inputs, hidden [32], 7 actions` (`dueling` when it is)."""
    dueling = ", dueling" if network.get("dueling") else ""
    return f"{network['observations']} inputs, hidden {network['hidden_sizes']}, {network['actions']} actions{dueling}"


def network_of(state: dict[str, Any]) -> dict[str, Any] | None:
    """A checkpoint's network shape: recorded, or read off a plain network's weights (older checkpoints)."""
    if "network" in state:
        return dict(state["network"])
    weights = [t for k, t in state["agent"].get("online", {}).items() if k.endswith("weight") and t.dim() == 2]
    if not weights:
        return None
    hidden = [int(t.shape[0]) for t in weights[:-1]]
    return {"observations": int(weights[0].shape[1]), "actions": int(weights[-1].shape[0]), "hidden_sizes": hidden}


def write_checkpoint(path: Path, state: dict[str, Any], metadata: dict[str, Any]) -> None:
    """`path` and its `.json`, each replaced whole: a crash mid-save never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)
    _write_text(path.with_suffix(".json"), json.dumps(metadata, indent=1))


def link_checkpoint(source: Path, target: Path) -> None:
    """`target` (and its `.json`) become the same checkpoint as `source`: a hard link where the file system
    has them (no second copy written), else a copy; replaced whole either way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.link")
    staged.unlink(missing_ok=True)
    try:
        os.link(source, staged)
    except OSError:
        shutil.copyfile(source, staged)
    os.replace(staged, target)
    _write_text(target.with_suffix(".json"), source.with_suffix(".json").read_text())


def _write_text(path: Path, text: str) -> None:
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(text)
    os.replace(staged, path)
