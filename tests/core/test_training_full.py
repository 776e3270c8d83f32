"""Full fine-tuning (`lora.mode="full"`): only the target weights of the last layers train, and the saved
adapter (an exact LoRA form of the weight change) rebuilds the trained encoder everywhere an adapter goes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from tests.core.test_training import tiny_cfg

TEXTS = ["A man is playing a guitar.", "Two dogs run in the park.", "A man is playing a guitar."]


def test_saved_full_weights_rebuild_the_trained_encoder(tiny_model_dir: Path, tmp_path: Path) -> None:
    from bellm.models import resolve_source
    from bellm.training import load_trained_encoder
    from bellm.training.adapter import adapter_metadata, build_lora_module, save_adapter
    from bellm.training.dev_score import embed_module

    cfg = tiny_cfg(tiny_model_dir, lora={"mode": "full", "layers": 2})
    res = resolve_source(cfg.model.source)
    module, adapter = build_lora_module(cfg, res)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(".layers.2." in n or ".layers.3." in n for n in trainable)
    assert all(n.endswith("proj.weight") for n in trainable)
    torch.manual_seed(0)
    with torch.no_grad():  # "training": a large change of every trainable weight
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    module.eval()
    out = save_adapter(tmp_path / "adapter", adapter, adapter_metadata(cfg, res, module, [], {}))
    state = load_file(str(out / "adapter_model.safetensors"))
    assert {k.split(".")[3] for k in state} == {"2", "3"}  # base_model.model.layers.<i>....
    enc = load_trained_encoder(out)
    ref = embed_module(module, enc.tokenizer, enc.template, TEXTS, cfg.encoder.max_length, 8)
    assert np.abs(enc.encode(TEXTS) - ref).max() < 1e-5
    assert json.loads((out / "bellm.json").read_text())["lora"]["mode"] == "full"


def test_full_training_changes_only_the_target_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    from bellm.training import train
    from bellm.training.checkpoint import latest_checkpoint

    cfg = tiny_cfg(tiny_model_dir, lora={"mode": "full", "layers": 1},
                   train={"max_steps": 2, "lr": 1e-3, "checkpoint_every": 1})
    result = train(cfg, tmp_path / "run")
    trained = latest_checkpoint(tmp_path / "run" / "checkpoints").trainable
    assert trained and all(".layers.3." in n for n in trained)
    state = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    deltas = [v for k, v in state.items() if k.endswith("lora_B.weight")]
    assert deltas and all(float(d.abs().max()) > 0 for d in deltas)
    eyes = [v for k, v in state.items() if k.endswith("lora_A.weight")]
    assert all(torch.equal(a, torch.eye(a.shape[0])) for a in eyes)


def test_full_mode_without_a_layer_limit_trains_every_layer(tiny_model_dir: Path) -> None:
    from bellm.models import resolve_source
    from bellm.training.adapter import build_lora_module

    cfg = tiny_cfg(tiny_model_dir, lora={"mode": "full", "layers": None})
    module, _ = build_lora_module(cfg, resolve_source(cfg.model.source))
    layers = {n.split(".layers.")[1].split(".")[0] for n, p in module.named_parameters() if p.requires_grad}
    assert layers == {"0", "1", "2", "3"}
    assert module.backbone.prefix.layers == 0  # nothing below the trained layers to cache
