"""LoRA training on the tiny model: data order, wrapping, outputs, and the adapter → Encoder round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bellm.profiles import build_config
from bellm.training.batches import (
    DataPosition,
    batch_stream,
    epoch_plan,
    load_train_data,
    make_micro_batch,
    micro_indices,
    normalize_scores,
    pair_share_note,
    text_ids,
)


def tiny_cfg(model_dir: Path, **sections):
    """The smoke profile on the tiny model; keyword sections are merged as overrides."""
    over = {"model": {"source": str(model_dir)}, "train": {"progress": False}}
    for key, val in sections.items():
        over[key] = {**over.get(key, {}), **val}
    return build_config("smoke", over)


# ---- data order ----------------------------------------------------------------------------------------


def test_normalize_scores_any_range() -> None:
    assert normalize_scores(np.array([0.0, 2.5, 5.0])).tolist() == [0.0, 0.5, 1.0]
    assert normalize_scores(np.array([-1.0, 1.0])).tolist() == [0.0, 1.0]
    assert normalize_scores(np.array([3.0, 3.0])).tolist() == [1.0, 1.0]


def test_epoch_plan_is_seeded_complete_and_mixed() -> None:
    plan = epoch_plan(50, 30, 8, seed=1, epoch=0)
    assert all(
        a.kind == b.kind and (a.indices == b.indices).all()
        for a, b in zip(plan, epoch_plan(50, 30, 8, seed=1, epoch=0), strict=True)
    )
    assert [b.kind for b in plan].count("pairs") == 6 and [b.kind for b in plan].count("triplets") == 3
    seen = np.concatenate([b.indices for b in plan if b.kind == "pairs"])
    assert len(set(seen.tolist())) == 48  # no repeats within an epoch; the partial batch is dropped
    other = epoch_plan(50, 30, 8, seed=1, epoch=1)
    assert any((a.indices != b.indices).any() or a.kind != b.kind for a, b in zip(plan, other, strict=True))


def test_pair_share_sees_every_pair_each_epoch_and_walks_all_triplets() -> None:
    # 40 pairs → 5 batches of 8; share 0.5 → 5 triplet batches per epoch, from 100 triplets (12 batches' worth)
    plans = [epoch_plan(40, 100, 8, seed=3, epoch=e, pair_share=0.5) for e in range(3)]
    for plan in plans:
        kinds = [b.kind for b in plan]
        assert kinds.count("pairs") == 5 and kinds.count("triplets") == 5
        assert sorted(np.concatenate([b.indices for b in plan if b.kind == "pairs"]).tolist()) == list(range(40))
    trips = np.concatenate([b.indices for plan in plans[:2] for b in plan if b.kind == "triplets"])
    assert len(set(trips.tolist())) == 80  # epochs 0-1 take 80 distinct triplets of the first shuffled pass
    assert set(np.concatenate([b.indices for b in plans[2] if b.kind == "triplets"]).tolist()) - set(trips.tolist())
    # a share of 0.25 asks three triplet batches per pair batch
    assert [b.kind for b in epoch_plan(40, 100, 8, 3, 0, pair_share=0.25)].count("triplets") == 15
    # without triplets the share has nothing to mix: an epoch is the pairs
    assert [b.kind for b in epoch_plan(40, 0, 8, 3, 0, pair_share=0.5)] == ["pairs"] * 5


def test_pair_share_without_two_kinds_says_it_does_nothing() -> None:
    data = load_train_data(tiny_cfg(Path("."), data={"max_train_pairs": 20, "max_train_triplets": 12}).data)
    assert pair_share_note(data, 4, None) is None and pair_share_note(data, 4, 0.5) is None
    assert "nothing to mix" in (pair_share_note(data, 16, 0.5) or "")  # 12 triplets < one batch of 16


def test_pair_share_stream_resumes_from_a_position() -> None:
    data = load_train_data(tiny_cfg(Path("."), data={"max_train_pairs": 20, "max_train_triplets": 12}).data)
    full = batch_stream(data, 4, 7, DataPosition(), pair_share=0.5)
    first = [next(full) for _ in range(14)]
    again = batch_stream(data, 4, 7, first[6][1], pair_share=0.5)
    for (b, pos), (b2, pos2) in zip(first[7:], [next(again) for _ in range(7)], strict=True):
        assert b.kind == b2.kind and (b.indices == b2.indices).all() and pos == pos2


def test_batch_stream_resumes_from_a_position() -> None:
    data = load_train_data(tiny_cfg(Path("."), data={"max_train_pairs": 20, "max_train_triplets": 12}).data)
    full = batch_stream(data, 4, 7, DataPosition())
    first = [next(full) for _ in range(12)]  # crosses the epoch boundary (8 batches per epoch)
    assert first[8][1].epoch == 1
    again = batch_stream(data, 4, 7, first[4][1])
    for (b, pos), (b2, pos2) in zip(first[5:], [next(again) for _ in range(7)], strict=True):
        assert b.kind == b2.kind and (b.indices == b2.indices).all() and pos == pos2


def test_micro_batches_of_ranks_concatenate_to_the_single_process_batch() -> None:
    plan = epoch_plan(64, 0, 16, seed=0, epoch=0)
    b = plan[0]
    one = micro_indices(b, 0, 0, 1, 16)
    two = np.concatenate([micro_indices(b, 0, r, 2, 8) for r in range(2)])
    assert (one == two).all()
    accum = np.concatenate([micro_indices(b, m, r, 2, 4) for m in range(2) for r in range(2)])
    assert (accum == b.indices).all()


def test_micro_batch_tokenises_like_the_encoder(tiny_model_dir: Path) -> None:
    from bellm.encoder import hf_backend_tokenizer
    from bellm.prompts import resolve_prompt
    from bellm.tokenize import encode_one, pad_batch

    data = load_train_data(tiny_cfg(tiny_model_dir).data)
    tok = hf_backend_tokenizer(str(tiny_model_dir))
    tpl = resolve_prompt("prompteol")
    idx = np.array([3, 1, 4])
    mb = make_micro_batch(data, "triplets", idx, tok, tpl, 48)
    texts = [data.anchor[i] for i in idx] + [data.positive[i] for i in idx] + [data.negative[i] for i in idx]
    ids, mask, span = pad_batch([encode_one(tok, tpl, t, 48) for t in texts])  # as the encoder pads
    assert (mb.input_ids.numpy() == ids).all() and (mb.attention_mask.numpy() == mask).all()
    assert (mb.span_mask.numpy() == span).all()
    assert mb.size == 3 and mb.ids.tolist() == text_ids(texts).tolist()
    assert text_ids(["a", "b", "a"]).tolist()[0] == text_ids(["a"]).tolist()[0]


@pytest.mark.parametrize("pooling", ["mean", "last", "mean_span"])
def test_length_groups_give_the_embeddings_and_gradients_of_one_padded_batch(
    tiny_model_dir: Path, pooling: str
) -> None:
    """`train.length_chunks` only skips padding: the loss and every LoRA gradient equal the one-batch step's."""
    from bellm.encoder import hf_backend_tokenizer
    from bellm.losses import triplet_objective
    from bellm.models import resolve_source
    from bellm.prompts import resolve_prompt
    from bellm.training.adapter import build_lora_module

    cfg = tiny_cfg(tiny_model_dir, encoder={"bidirectional_layers": 2, "pooling": pooling}, lora={"dropout": 0.0})
    module, _ = build_lora_module(cfg, resolve_source(str(tiny_model_dir)))
    torch.manual_seed(0)
    for name, p in module.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)  # B starts at zero; make the adapters act
    data = load_train_data(cfg.data)
    tok = hf_backend_tokenizer(str(tiny_model_dir))
    idx = np.arange(8)
    grouped = make_micro_batch(data, "triplets", idx, tok, resolve_prompt("prompteol"), 48, max_chunks=3)
    plain = make_micro_batch(data, "triplets", idx, tok, resolve_prompt("prompteol"), 48, max_chunks=1)
    assert len(grouped.chunks) == 3 and grouped.padded_tokens < plain.padded_tokens == plain.input_ids.numel()
    assert grouped.tokens == plain.tokens

    def step(mb, chunks):
        module.zero_grad(set_to_none=True)
        emb = module(mb.input_ids, mb.attention_mask, mb.span_mask, chunks)  # (3·8,H)
        loss = triplet_objective(*emb.split(mb.size), cfg.loss, *mb.ids.split(mb.size))["loss"]
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}
        return emb.detach(), float(loss), grads

    e1, l1, g1 = step(grouped, grouped.chunks)
    e2, l2, g2 = step(plain, None)  # the plain forward: one padded batch, no groups
    assert torch.allclose(e1, e2, atol=1e-5) and abs(l1 - l2) < 1e-5
    worst = max(float((g1[n] - g2[n]).abs().max() / g2[n].abs().max().clamp_min(1e-12)) for n in g1)
    assert g1.keys() == g2.keys() and worst < 1e-4, worst
    assert any(float(g.abs().max()) > 0 for g in g1.values())


# ---- LoRA wrapping -------------------------------------------------------------------------------------


def test_lora_keeps_the_bidirectional_conversion(tiny_model_dir: Path) -> None:
    from bellm.backbone import BellmBackbone, SentenceEncoderModule, unwrap_decoder
    from bellm.models import load_model, resolve_source
    from bellm.training.adapter import build_lora_module

    cfg = tiny_cfg(tiny_model_dir, encoder={"bidirectional_layers": 2}, lora={"dropout": 0.0})
    res = resolve_source(str(tiny_model_dir))
    module, peft_model = build_lora_module(cfg, res)
    inner = unwrap_decoder(peft_model)
    assert [layer.self_attn.is_causal for layer in inner.layers] == [True, True, False, False]
    assert type(inner.layers[-1].self_attn.q_proj).__name__ == "Linear" and hasattr(
        inner.layers[-1].self_attn.q_proj, "lora_A"
    )
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("embed_tokens" in n for n in trainable)

    ids = torch.randint(5, 1000, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    module.eval()
    plain = SentenceEncoderModule(BellmBackbone(load_model(res, causal_lm=False), 2), "last").eval()
    with torch.no_grad():
        # LoRA B starts at zero: same function as the unwrapped BeLLM module (the masks are in effect).
        assert torch.allclose(module(ids, mask), plain(ids, mask), atol=1e-5)
        # and the last-k conversion matters: a causal module gives a different embedding
        causal = SentenceEncoderModule(BellmBackbone(load_model(res, causal_lm=False), 0), "last").eval()
        assert not torch.allclose(module(ids, mask), causal(ids, mask), atol=1e-4)


def test_forbidden_lora_targets(tiny_model_dir: Path) -> None:
    from bellm.models import resolve_source
    from bellm.training.adapter import build_lora_module

    cfg = tiny_cfg(tiny_model_dir, lora={"target_modules": ["q_proj", "embed_tokens"]})
    with pytest.raises(ValueError, match="embed_tokens"):
        build_lora_module(cfg, resolve_source(str(tiny_model_dir)))


# ---- a whole run ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from bellm.training import train

    out = tmp_path_factory.mktemp("run")
    cfg = tiny_cfg(tiny_model_dir, train={"max_steps": 6, "checkpoint_every": 2, "eval_every": 3, "lr": 1e-3},
                   data={"max_eval_pairs": 24})
    return cfg, out, train(cfg, out)


def test_run_writes_the_contract(trained, tiny_model_dir: Path) -> None:
    from bellm.io import sha256_file
    from bellm.models import resolve_source

    cfg, out, result = trained
    assert result.adapter_dir == out / "adapter" and result.steps == 6 and np.isfinite(result.final_loss)
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    meta = json.loads((out / "adapter" / "bellm.json").read_text())
    assert meta["base_model"] == str(tiny_model_dir)
    assert meta["base_model_sha256"] == resolve_source(str(tiny_model_dir)).sha256
    assert meta["bidirectional_layers"] == 2 and meta["num_layers"] == 4 and meta["dim"] == 64
    assert meta["pooling"] == "last" and "{text}" in meta["prompt"] and meta["max_length"] == 48
    assert meta["lora"]["r"] == cfg.lora.r and meta["seed"] == cfg.train.seed
    assert meta["steps"] == result.best_step and meta["selected"] == "best"
    assert {f["kind"] for f in meta["data"]} == {"pairs", "triplets"}
    for f in meta["data"]:
        assert f["sha256"] == sha256_file(f["path"])
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 7))
    assert {"loss", "lr", "tokens", "tokens_per_s", "grad_norm", "kind"} <= set(lines[0])
    assert "dev_spearman" in lines[2] and "dev_spearman" in lines[5]
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step-00000004", "step-00000006"]


def test_trained_adapter_loads_as_encoder_matching_training(trained) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from bellm.training import load_trained_encoder
    from bellm.training.adapter import build_lora_module
    from bellm.training.dev_score import embed_module

    cfg, out, result = trained
    enc = load_trained_encoder(result.adapter_dir)
    assert enc.k == 2 and enc.max_length == 48
    texts = ["A man is playing a guitar.", "Two dogs run.", "A man is playing a guitar."]
    got = enc.encode(texts)
    # the same weights inside the training module (LoRA unmerged) give the same embeddings
    module, peft_model = build_lora_module(cfg, enc.source)
    saved = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    set_peft_model_state_dict(peft_model, saved)
    ref = embed_module(module, enc.tokenizer, enc.template, texts, 48, 8)
    assert np.abs(got - ref).max() < 1e-4


def test_rerun_of_a_finished_run_is_a_noop(trained) -> None:
    from bellm.training import train

    cfg, out, result = trained
    again = train(cfg, out)
    assert again.resumed_from == 6 and again.steps == 6
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 6


def test_resume_refuses_a_different_config(trained) -> None:
    from bellm.training import train

    cfg, out, _ = trained
    other = cfg.model_copy(deep=True)
    other.train.lr = 5e-4
    with pytest.raises(ValueError, match="different configuration"):
        train(other, out)


def test_gradient_checkpointing_gives_the_same_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    from bellm.training import train

    logs = []
    for gc in (False, True):
        cfg = tiny_cfg(tiny_model_dir, train={"max_steps": 2, "gradient_checkpointing": gc}, lora={"dropout": 0.1})
        r = train(cfg, tmp_path / str(gc))
        logs.append([json.loads(x)["loss"] for x in r.log_path.read_text().splitlines()])
    assert logs[0] == pytest.approx(logs[1], rel=1e-5)


def test_nproc_without_torchrun_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    from bellm.training import train

    with pytest.raises(ValueError, match="torchrun"):
        train(tiny_cfg(tiny_model_dir, train={"nproc_per_node": 2}), tmp_path)


def test_lora_on_the_last_layers_only(tiny_model_dir: Path) -> None:
    from bellm.backbone import unwrap_decoder
    from bellm.models import resolve_source
    from bellm.training.adapter import build_lora_module

    cfg = tiny_cfg(tiny_model_dir, lora={"layers": 2})
    module, peft_model = build_lora_module(cfg, resolve_source(str(tiny_model_dir)))
    adapted = [hasattr(layer.self_attn.q_proj, "lora_A") for layer in unwrap_decoder(peft_model).layers]
    assert adapted == [False, False, True, True]
    ids = torch.randint(5, 1000, (2, 7))
    module(ids, torch.ones_like(ids)).sum().backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="exceeds"):
        build_lora_module(tiny_cfg(tiny_model_dir, lora={"layers": 5}), resolve_source(str(tiny_model_dir)))


def test_cli_train_reports_config_errors_cleanly(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bellm.cli import _register, app

    _register()
    res = CliRunner().invoke(app, ["train", "--output", str(tmp_path), "--set", "train.lr=-1"])
    assert res.exit_code == 2 and "train.lr" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["train", "--output", str(tmp_path), "--profile", "nope"])
    assert res.exit_code == 2 and "unknown profile" in res.output
    from bellm.profiles import PROFILES

    assert PROFILES["quick"]["train"]["lr"] > 0  # a bad override never leaks into the shared profiles


def test_cli_relaunch_command_uses_torchrun(tmp_path: Path) -> None:
    from bellm.cli.train import torchrun_command

    cmd = torchrun_command(4, tmp_path / "c.json", tmp_path)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=4" in cmd
    assert cmd[cmd.index("-m", 3) + 1] == "bellm.training"


def test_lr_schedule_warms_up_then_decays() -> None:
    from bellm.training.optim import lr_factor

    assert [lr_factor(s, 4, 10, "linear") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 10, "linear") == 1.0 and lr_factor(10, 4, 10, "linear") == 0.0
    assert lr_factor(7, 4, 10, "linear") == pytest.approx(0.5)
    assert lr_factor(7, 4, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(5, 4, 10, "cosine") > lr_factor(5, 4, 10, "linear")
    assert lr_factor(9, 4, 10, "constant") == 1.0


def test_adapter_config_names_the_declared_source_not_a_local_path(tiny_model_dir: Path, tmp_path: Path) -> None:
    """PEFT writes the directory the weights came from; the adapter must name the source the user declared."""
    from bellm.models import resolve_source
    from bellm.training.adapter import adapter_metadata, build_lora_module, save_adapter

    declared = tmp_path / "declared-model"
    declared.symlink_to(tiny_model_dir)  # resolves to another path, as the embedded name resolves to a cache dir
    res = resolve_source(str(declared))
    assert res.path != str(declared)
    cfg = tiny_cfg(declared)
    module, peft_model = build_lora_module(cfg, res)
    out = save_adapter(tmp_path / "adapter", peft_model, adapter_metadata(cfg, res, module, [], {}))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(declared)
    readme = (out / "README.md").read_text()
    assert res.path not in readme and "base_model:" not in readme.split("---")[1]  # no local path in the card


# ---- a training directory is never shared, diverged or stale -------------------------------------------


def test_a_busy_training_directory_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two `bellm train -o same` used to interleave: one crashed on a rename, the other lost log lines."""
    from typer.testing import CliRunner

    from bellm.cli import _register, app
    from bellm.errors import BusyError
    from bellm.locks import file_lock
    from bellm.training import train
    from bellm.training.loop import LOCK_FILE

    out = tmp_path / "run"
    with file_lock(out / LOCK_FILE):  # another trainer holds the directory
        with pytest.raises(BusyError, match="in use by another bellm process"):
            train(tiny_cfg(tiny_model_dir, train={"max_steps": 1}), out)
        _register()
        res = CliRunner().invoke(app, ["train", "-o", str(out), "--profile", "smoke", "--no-progress",
                                       "--set", f"model.source={tiny_model_dir}", "--set", "train.max_steps=1"])
        assert res.exit_code == 2 and "in use" in res.output, res.output
    assert not (out / "train_log.jsonl").exists() and not (out / "checkpoints").exists()
    assert train(tiny_cfg(tiny_model_dir, train={"max_steps": 1}), out).steps == 1  # free again


def test_non_finite_loss_aborts_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A diverging run used to finish and publish a NaN adapter with exit 0."""
    from bellm.training import train
    from bellm.training.loop import NonFiniteLossError

    cfg = tiny_cfg(tiny_model_dir, train={"max_steps": 4, "lr": 1e30, "checkpoint_every": 1})
    with pytest.raises(NonFiniteLossError, match="diverged at step"):
        train(cfg, tmp_path)
    assert not (tmp_path / "adapter").exists()


def test_resume_refuses_changed_data_contents(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The resume fingerprint held the data *paths* only: an edited file resumed the old run's checkpoints."""
    from bellm.paths import STS_DIR
    from bellm.training import train

    data = tmp_path / "pairs.tsv"
    lines = (STS_DIR / "stsb" / "train.tsv").read_text().splitlines()
    data.write_text("\n".join(lines[:41]) + "\n")
    cfg = tiny_cfg(tiny_model_dir, train={"max_steps": 2, "checkpoint_every": 1},
                   data={"train_pairs": [str(data)], "train_triplets": [], "exclude_held_out": False})
    train(cfg, tmp_path / "out")
    data.write_text("\n".join([lines[0], *lines[41:81]]) + "\n")
    with pytest.raises(ValueError, match="different configuration"):
        train(cfg, tmp_path / "out")


def test_best_adapter_is_checkpointed_and_restored(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`best/` lived outside the checkpoints: after a kill, a resume could publish a `best/` written by steps
    that were rolled back (here: a stray file standing for such a later best)."""
    from bellm.training import train
    from bellm.training.checkpoint import list_checkpoints

    out = tmp_path / "out"
    base = {"max_steps": 4, "checkpoint_every": 2, "keep_checkpoints": 5, "lr": 1e-3}
    cfg = tiny_cfg(tiny_model_dir, train={**base, "eval_every": 2}, data={"max_eval_pairs": 24})
    train(cfg, out)
    ckpts = list_checkpoints(out / "checkpoints")
    assert all((c / "best" / "adapter_model.safetensors").is_file() for c in ckpts)
    # Simulate a kill after step 4's best/ was written but before its checkpoint: resume from step 2.
    import shutil

    shutil.rmtree(ckpts[-1])
    shutil.rmtree(out / "adapter")
    (out / "best" / "FROM_A_ROLLED_BACK_STEP").write_text("x")
    resumed = train(tiny_cfg(tiny_model_dir, train=base, data={"max_eval_pairs": 24}), out)
    assert resumed.resumed_from == 2
    assert not (out / "adapter" / "FROM_A_ROLLED_BACK_STEP").exists()
    assert not (out / "best" / "FROM_A_ROLLED_BACK_STEP").exists()


def test_truncated_model_trains_and_reloads_the_same(tiny_model_dir: Path, tmp_path: Path) -> None:
    """keep_layers round-trips through training and the adapter's bellm.json; the dev curve uses the cap."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from bellm.training import load_trained_encoder, train
    from bellm.training.adapter import build_lora_module
    from bellm.training.dev_score import embed_module

    cfg = tiny_cfg(tiny_model_dir, encoder={"keep_layers": 3, "bidirectional_layers": 1, "pooling": "mean"},
                   train={"max_steps": 2, "eval_every": 1, "eval_max_pairs": 8, "lr": 1e-3})
    result = train(cfg, tmp_path / "run")
    meta = json.loads((result.adapter_dir / "bellm.json").read_text())
    assert meta["keep_layers"] == 3 and meta["num_layers"] == 3
    enc = load_trained_encoder(result.adapter_dir)
    assert enc.num_layers == 3 and enc.module.backbone.flags == [False, False, True]
    texts = ["A man is playing a guitar.", "Two dogs run."]
    module, peft_model = build_lora_module(cfg, enc.source)
    set_peft_model_state_dict(peft_model, load_file(str(result.adapter_dir / "adapter_model.safetensors")))
    ref = embed_module(module, enc.tokenizer, enc.template, texts, cfg.encoder.max_length, 8)
    assert np.abs(enc.encode(texts) - ref).max() < 1e-4


def test_adapter_bytes_do_not_depend_on_the_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The same weights saved by two processes (different hash seeds) give the same adapter sha256, so the
    embedding cache and the train cache hit across processes. PEFT writes target_modules in set order."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, torch; from pathlib import Path; from bellm.profiles import build_config;"
        "from bellm.models import resolve_source; from bellm.io import sha256_dir;"
        "from bellm.training.adapter import build_lora_module, declare_base_model;"
        "cfg = build_config('smoke', {'model': {'source': sys.argv[1]}});"
        "torch.manual_seed(0); _, peft = build_lora_module(cfg, resolve_source(sys.argv[1]));"
        "out = Path(sys.argv[2]); peft.save_pretrained(str(out)); declare_base_model(out, sys.argv[1]);"
        "print(sha256_dir(out))"
    )
    shas = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code, str(tiny_model_dir), str(tmp_path / seed)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        shas.add(out.stdout.strip().splitlines()[-1])
    assert len(shas) == 1


@pytest.mark.parametrize("pooling", ["mean_span", "last_mean_span"])
def test_span_poolings_train_and_reload_the_same(pooling: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Span poolings need the sentence's span in every training forward (they raised before: the micro-batch
    dropped the span mask), and the trained adapter encodes as the training module does."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from bellm.training import load_trained_encoder, train
    from bellm.training.adapter import build_lora_module
    from bellm.training.dev_score import embed_module

    cfg = tiny_cfg(tiny_model_dir, encoder={"bidirectional_layers": 2, "pooling": pooling},
                   train={"max_steps": 2, "eval_every": 1, "eval_max_pairs": 8, "lr": 1e-3})
    result = train(cfg, tmp_path / "run")
    enc = load_trained_encoder(result.adapter_dir)
    assert enc.describe()["pooling"] == pooling
    texts = ["A man is playing a guitar.", "Two dogs run."]
    module, peft_model = build_lora_module(cfg, enc.source)
    set_peft_model_state_dict(peft_model, load_file(str(result.adapter_dir / "adapter_model.safetensors")))
    ref = embed_module(module, enc.tokenizer, enc.template, texts, cfg.encoder.max_length, 8)
    assert np.abs(enc.encode(texts) - ref).max() < 1e-4


def test_the_dev_curve_reads_the_whole_dev_file() -> None:
    """The in-training curve's capped dev set spans the file (a genre-ordered dev split is not read by its head)."""
    from bellm.data import load_pairs
    from bellm.profiles import build_config
    from bellm.training.dev_score import curve_pairs

    cfg = build_config("quick")
    full, curve = load_pairs(cfg.data.dev_pairs), curve_pairs(cfg)
    assert len(curve) == cfg.dev_curve_pairs < len(full)
    assert curve.sentence1[-1] in full.sentence1[len(full) * 9 // 10:]
