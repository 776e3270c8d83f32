"""`train(cfg, out_dir)`: LoRA fine-tuning of a BeLLM encoder with the AnglE objective.

One entry point for one process or many (torchrun/DDP). It resumes by itself from the newest
checkpoint in `out_dir/checkpoints/`: weights, optimizer, scheduler, per-rank RNG states and the
data position are restored, so a run killed at any point ends with the same adapter as an
uninterrupted one (fp32 CPU). Outputs: `out_dir/adapter/` (PEFT adapter + bellm.json),
`out_dir/train_log.jsonl` (one line per optimizer step), `out_dir/config.json`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bellm.config import RunConfig
from bellm.contract import AdapterDescriptor
from bellm.encoder import hf_backend_tokenizer
from bellm.errors import InputError
from bellm.hardware import autocast
from bellm.io import atomic_path, write_json_atomic, write_text_atomic
from bellm.keys import resume_fingerprint
from bellm.locks import file_lock
from bellm.losses import pair_objective, triplet_objective
from bellm.models import resolve_source
from bellm.training import checkpoint as ckpt
from bellm.training import distributed as D
from bellm.training.adapter import adapter_metadata, build_lora_module, count_parameters, save_adapter
from bellm.training.batches import (
    DataPosition,
    MicroBatch,
    batch_stream,
    check_batch_fits,
    load_train_data,
    make_micro_batch,
    micro_indices,
    pair_share_note,
)
from bellm.training.dev_score import curve_pairs, dev_spearman
from bellm.training.optim import make_optimizer, make_scheduler

log = logging.getLogger(__name__)

PARTS = ("loss", "cosine", "ibn", "angle")
LOCK_FILE = ".train.lock"
@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    steps: int
    final_loss: float
    log_path: Path
    seconds: float
    resumed_from: int | None = None
    best_step: int | None = None
    best_dev_spearman: float | None = None


class NonFiniteLossError(FloatingPointError):
    """Training diverged (NaN/inf loss): stopped before the optimizer step, nothing of it is saved."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def global_batch(cfg: RunConfig, world: int) -> int:
    return cfg.train.batch_size * world * cfg.train.grad_accum


def check_world(cfg: RunConfig, info: D.DistInfo) -> None:
    n = cfg.train.nproc_per_node
    if n > 1 and not info.enabled:
        raise InputError(
            f"train.nproc_per_node={n} needs {n} processes: use `bellm train` (it relaunches itself under torchrun) "
            f"or `torchrun --nproc_per_node={n} -m bellm.training --config CONFIG.json --output DIR`"
        )
    if info.enabled and info.local_world_size != n:
        raise InputError(f"started with {info.local_world_size} processes per node but train.nproc_per_node={n}")


def truncate_log(path: Path, last_step: int) -> None:
    """Keep the log lines of steps ≤ `last_step` (a killed run may have logged steps past its checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the kill
        if rec.get("step", 0) <= last_step:
            keep.append(line)
    write_text_atomic(path, "".join(f"{x}\n" for x in keep))


class Trainer:
    """The state of one training run on one rank; `run()` does the work."""

    def __init__(self, cfg: RunConfig, out_dir: Path, info: D.DistInfo, progress: bool | None) -> None:
        self.cfg, self.out, self.info = cfg, out_dir, info
        t = cfg.train
        self.progress = t.progress if progress is None else progress
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        seed_everything(t.seed)
        self.res = resolve_source(cfg.model.source)
        self.tok = hf_backend_tokenizer(self.res.path)
        self.template = cfg.encoder.template
        self.data = load_train_data(cfg.data)
        self.gb = global_batch(cfg, info.world_size)
        check_batch_fits(self.data, self.gb)
        for kind, n in (("pairs", self.data.n_pairs), ("triplets", self.data.n_triplets)):
            if 0 < n < self.gb:
                log.warning("%d %s are fewer than one global batch (%d): they will not be used", n, kind, self.gb)
        if note := pair_share_note(self.data, self.gb, cfg.data.pair_share):
            log.warning("%s", note)
        self.dev = curve_pairs(cfg) if t.eval_every else None
        self.module, self.peft = build_lora_module(cfg, self.res)
        self.module.to(info.device)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.opt = make_optimizer(self.params, t)
        self.sched = make_scheduler(self.opt, t)
        seed_everything(t.seed + 1 + info.rank)  # dropout differs per rank, replayable per rank
        self.step, self.position = 0, DataPosition()
        self.best: dict[str, Any] | None = None
        self.last_loss = float("nan")
        self.resumed_from: int | None = None
        self.fingerprint = resume_fingerprint(cfg, [f["sha256"] for f in self.data.files])
        self.log_path = out_dir / "train_log.jsonl"
        self.ckpt_root = out_dir / "checkpoints"
        self.cuda = info.device.type == "cuda"

    # ---- resume / checkpoint -------------------------------------------------------------------------

    def resume(self) -> None:
        found = ckpt.latest_checkpoint(self.ckpt_root)
        if found is None:
            if self.info.is_main:  # a run killed before its first checkpoint starts over: so does its log
                truncate_log(self.log_path, 0)
            return
        st = found.state
        if st["fingerprint"] != self.fingerprint:
            raise InputError(
                f"{self.ckpt_root} holds checkpoints of a different configuration (fingerprint {st['fingerprint']}, "
                f"now {self.fingerprint}); use another --output or delete that directory"
            )
        if st["world_size"] != self.info.world_size:
            raise InputError(
                f"checkpoint {found.path.name} was written by {st['world_size']} process(es), now "
                f"{self.info.world_size}; resume with the same number"
            )
        ckpt.load_trainable(self.module, found.trainable)
        self.opt.load_state_dict(found.optimizer)
        self.sched.load_state_dict(found.scheduler)
        ckpt.restore_rng(found.rng[self.info.rank])
        self.step = found.step
        self.position = DataPosition(**st["position"])
        self.best = st.get("best")
        self.last_loss = st.get("last_loss", float("nan"))
        self.resumed_from = found.step
        if self.info.is_main:
            truncate_log(self.log_path, found.step)
            ckpt.restore_best(found.path, self.out / "best")
            log.warning("resumed from checkpoint %s (step %d)", found.path, found.step)

    def save_checkpoint(self) -> None:
        rngs = D.all_gather_objects(ckpt.capture_rng(), self.info)
        if self.info.is_main:
            state = {
                "fingerprint": self.fingerprint,
                "world_size": self.info.world_size,
                "position": {"epoch": self.position.epoch, "index": self.position.index},
                "best": self.best,
                "last_loss": self.last_loss,
            }
            best_dir = self.out / "best"
            ckpt.save_checkpoint(
                self.ckpt_root, self.step, ckpt.trainable_state(self.module), self.opt.state_dict(),
                self.sched.state_dict(), rngs, state, keep=self.cfg.train.keep_checkpoints,
                best_dir=best_dir if self.best is not None and best_dir.is_dir() else None,
            )
        D.barrier(self.info)

    # ---- one step ------------------------------------------------------------------------------------

    def micro_loss(self, model: torch.nn.Module, mb: MicroBatch) -> dict[str, torch.Tensor]:
        dev = self.info.device
        with autocast(self.cfg.train.precision, dev.type):
            chunks = [(rows.to(dev), w) for rows, w in mb.chunks]
            emb = model(mb.input_ids.to(dev), mb.attention_mask.to(dev), mb.span_mask.to(dev), chunks)  # (G·b,H)
        groups = list(emb.float().split(mb.size))  # G × (b,H)
        ids = list(mb.ids.to(dev).split(mb.size))  # G × (b,)
        labels = mb.labels.to(dev)
        if self.cfg.loss.gather_across_ranks and self.info.enabled:
            groups = [D.gather_with_grad(g, self.info) for g in groups]  # G × (world·b,H)
            ids = [D.gather_nograd(i, self.info) for i in ids]
            labels = D.gather_nograd(labels, self.info)
        if mb.kind == "pairs":
            return pair_objective(groups[0], groups[1], labels, self.cfg.loss)
        return triplet_objective(*groups, self.cfg.loss, *ids)

    def train_step(self, model: torch.nn.Module, batch: Any) -> dict[str, float]:
        t = self.cfg.train
        sums = torch.zeros(len(PARTS) + 2, dtype=torch.float64)  # PARTS..., tokens, padded tokens
        for micro in range(t.grad_accum):
            idx = micro_indices(batch, micro, self.info.rank, self.info.world_size, t.batch_size)
            mb = make_micro_batch(self.data, batch.kind, idx, self.tok, self.template, self.cfg.encoder.max_length,
                                  t.length_chunks)
            last = micro == t.grad_accum - 1
            sync = contextlib.nullcontext() if last or not self.info.enabled else model.no_sync()
            with sync:
                parts = self.micro_loss(model, mb)
                (parts["loss"] / t.grad_accum).backward()
            for i, name in enumerate(PARTS):
                if name in parts:
                    sums[i] += float(parts[name].detach()) / t.grad_accum
            sums[-2] += mb.tokens
            sums[-1] += mb.padded_tokens
        # Every rank must agree to stop, so the check uses the all-reduced loss, before the optimizer step.
        check = D.all_reduce_sum(sums[:1].clone(), self.info)
        if not math.isfinite(float(check[0])):
            raise NonFiniteLossError(
                f"training diverged at step {self.step + 1}: the loss is {float(check[0])} (lr "
                f"{self.opt.param_groups[0]['lr']:.3g}); lower train.lr or check the data. Nothing of this step is "
                f"saved; the last checkpoint is intact"
            )
        if t.max_grad_norm:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, t.max_grad_norm))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.params])))
        lr = self.opt.param_groups[0]["lr"]
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        # Every rank holds the same gathered loss, or its local one: either way the mean is the logged value.
        sums = D.all_reduce_sum(sums, self.info)
        stats = {name: float(sums[i]) / self.info.world_size for i, name in enumerate(PARTS)}
        stats.update(tokens=int(sums[-2]), padded_tokens=int(sums[-1]), lr=lr, grad_norm=grad_norm)
        return stats

    # ---- evaluation and outputs ----------------------------------------------------------------------

    def metadata(self, **extra: Any) -> AdapterDescriptor:
        dev = self.cfg.data.dev_pairs if self.dev is not None else None
        return adapter_metadata(self.cfg, self.res, self.module, self.data.files,
                                {"global_batch": self.gb, "dev_pairs": dev, **extra})

    def evaluate(self) -> float | None:
        score = None
        if self.info.is_main:
            assert self.dev is not None
            with autocast(self.cfg.train.precision, self.info.device.type):
                score = dev_spearman(self.module, self.tok, self.template, self.dev, self.cfg.encoder.max_length,
                                     self.cfg.eval.batch_size)
            if self.best is None or score > self.best["dev_spearman"]:
                self.best = {"step": self.step, "dev_spearman": score}
                save_adapter(self.out / "best", self.peft,
                             self.metadata(steps=self.step, selected="best", dev_spearman=score))
        score = D.broadcast_object(score, self.info)
        self.best = D.broadcast_object(self.best, self.info)
        return score

    def finish(self) -> Path:
        dest = self.out / "adapter"
        if not self.info.is_main:
            return dest
        best_dir = self.out / "best"
        if self.cfg.train.select_best and self.best is not None and best_dir.is_dir():
            with atomic_path(dest) as tmp:
                shutil.copytree(best_dir, tmp)
            return dest
        meta = self.metadata(steps=self.step, selected="last", final_loss=self.last_loss,
                             best=self.best)
        return save_adapter(dest, self.peft, meta)

    # ---- the loop ------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        t0 = time.perf_counter()
        t = self.cfg.train
        if self.info.is_main:
            write_json_atomic(self.out / "config.json", self.cfg.model_dump())
        self.resume()
        model = D.wrap_ddp(self.module, self.info)
        trainable, total = count_parameters(self.module)
        what = "full weights" if self.cfg.lora.mode == "full" else f"LoRA r={self.cfg.lora.r}"
        log.info("training %d of %d parameters (%s), global batch %d, steps %d..%d",
                 trainable, total, what, self.gb, self.step + 1, t.max_steps)
        bar = None
        if self.info.is_main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        stream = batch_stream(self.data, self.gb, t.seed, self.position, self.cfg.data.pair_share)
        logf = open(self.log_path, "a", encoding="utf-8") if self.info.is_main else None  # noqa: SIM115
        try:
            while self.step < t.max_steps:
                batch, self.position = next(stream)
                s0 = time.perf_counter()
                stats = self.train_step(model, batch)
                self.step += 1
                dt = time.perf_counter() - s0
                self.last_loss = stats["loss"]
                rec = {"step": self.step, "epoch": self.position.epoch, "kind": batch.kind, **stats,
                       "step_s": round(dt, 4), "tokens_per_s": round(stats["tokens"] / dt, 1)}
                if t.eval_every and (self.step % t.eval_every == 0 or self.step == t.max_steps):
                    rec["dev_spearman"] = self.evaluate()
                if logf is not None:
                    logf.write(json.dumps(rec) + "\n")
                    logf.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", tok_s=f"{rec['tokens_per_s']:.0f}", refresh=False)
                    bar.update(1)
                if self.step % t.checkpoint_every == 0 or self.step == t.max_steps:
                    self.save_checkpoint()
        finally:
            if logf is not None:
                logf.close()
            if bar is not None:
                bar.close()
        adapter = self.finish()
        D.barrier(self.info)
        best = self.best or {}
        return TrainResult(adapter, self.step, self.last_loss, self.log_path, time.perf_counter() - t0,
                           self.resumed_from, best.get("step"), best.get("dev_spearman"))


def train(
    cfg: RunConfig, out_dir: str | Path, progress: bool | None = None, lock_timeout: float | None = 0.0
) -> TrainResult:
    """Train (or resume training) into `out_dir`; works alone or under torchrun (DDP). Raises `BusyError`
    when another process trains into `out_dir` (after waiting `lock_timeout` seconds; None: forever)."""
    info = D.init_distributed()
    try:
        check_world(cfg, info)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # One writer per training directory (rank 0 holds it for the whole torchrun job); a second
        # `bellm train -o same` fails at once, a flow waits (`lock_timeout=None`) and then resumes.
        lock = file_lock(out / LOCK_FILE, timeout=lock_timeout, what=f"training directory {out}") \
            if info.is_main else contextlib.nullcontext()
        with lock:
            return Trainer(cfg, out, info, progress).run()
    finally:
        D.shutdown(info)
