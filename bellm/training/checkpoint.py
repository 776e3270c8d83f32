"""Atomic training checkpoints: trainable (LoRA) weights, optimizer, scheduler, RNG states, data position.

A checkpoint is a directory `checkpoints/step-XXXXXXXX/` that appears in one rename (`bellm.io`),
so a `kill -9` at any moment leaves either the previous or the new checkpoint, never half of one.
RNG states (python, numpy, torch CPU and CUDA) are kept per rank so dropout and any sampling replay
exactly after a resume.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from bellm.io import atomic_path

PREFIX = "step-"
BEST = "best"


def capture_rng() -> dict[str, Any]:
    """Every RNG the training step touches, in a form `torch.load(weights_only=True)` accepts."""
    py = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": np_state["state"]["key"].tolist(),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: list[dict[str, Any]]  # one per rank
    state: dict[str, Any]  # json: step, data position, best metric, config fingerprint, world size


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters being trained, by name, detached copies on CPU."""
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in module.named_parameters() if p.requires_grad}


def load_trainable(module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable weights back; the names must match exactly (same LoRA config)."""
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if set(params) != set(weights):
        missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
        raise ValueError(f"checkpoint does not match the model: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n].to(p.device, p.dtype))


def save_checkpoint(
    root: Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    rng: list[dict[str, Any]],
    state: dict[str, Any],
    keep: int = 2,
    best_dir: Path | None = None,
) -> Path:
    """Write `root/step-XXXXXXXX/` atomically, then drop all but the newest `keep` checkpoints.
    `best_dir` (the best-dev adapter so far) is copied in, so a resume restores the matching `best/`."""
    dest = root / f"{PREFIX}{step:08d}"
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        if best_dir is not None:
            shutil.copytree(best_dir, tmp / BEST)
        save_file(trainable, str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optimizer, "scheduler": scheduler, "rng": rng}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp dirs of an interrupted save are ignored)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def load_checkpoint(path: Path) -> Checkpoint:
    state = json.loads((path / "state.json").read_text())
    blob = torch.load(path / "optim.pt", map_location="cpu", weights_only=True)
    return Checkpoint(
        path=path,
        step=int(state["step"]),
        trainable=load_file(str(path / "trainable.safetensors")),
        optimizer=blob["optimizer"],
        scheduler=blob["scheduler"],
        rng=blob["rng"],
        state=state,
    )


def restore_best(checkpoint_dir: Path, best_dir: Path) -> None:
    """Make `best_dir` what it was when the checkpoint was written (a later `best/` from steps that are
    about to be replayed, or none at all, must not survive the resume)."""
    saved = checkpoint_dir / BEST
    if saved.is_dir():
        with atomic_path(best_dir) as tmp:
            shutil.copytree(saved, tmp)
    elif best_dir.exists():
        shutil.rmtree(best_dir)


def latest_checkpoint(root: Path) -> Checkpoint | None:
    found = list_checkpoints(root)
    return load_checkpoint(found[-1]) if found else None
