"""LoRA fine-tuning of BeLLM encoders with the AnglE objective: resumable, DDP-ready.

    from bellm.training import train, load_trained_encoder
    result = train(build_config("quick"), Path("runs/quick"))   # resumes if runs/quick/checkpoints exists
    enc = load_trained_encoder(result.adapter_dir)

Modules: `batches` (data order), `loop` (the loop), `checkpoint`, `distributed`, `adapter` (LoRA +
adapter directory), `optim`, `dev_score` (dev Spearman). Multi-process: `bellm train` relaunches itself
under torchrun when `train.nproc_per_node > 1`, or run `torchrun -m bellm.training --config C --output D`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TrainResult", "load_trained_encoder", "read_metadata", "train"]

if TYPE_CHECKING:
    from bellm.training.adapter import load_trained_encoder, read_metadata
    from bellm.training.loop import TrainResult, train


def __getattr__(name: str) -> Any:
    # Lazy: importing the package stays cheap (torch/peft load only when training or loading).
    if name in ("train", "TrainResult"):
        from bellm.training import loop

        return getattr(loop, name)
    if name in ("load_trained_encoder", "read_metadata"):
        from bellm.training import adapter

        return getattr(adapter, name)
    raise AttributeError(name)
