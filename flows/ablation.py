"""The `bellm-ablation` flow: where does backward dependency actually help?

Fans out over k × pooling (trained on a fixed budget, and zero-shot), then bootstraps each trial's
difference from the k=0 baseline with the same pooling, and writes a table (markdown + CSV) and a plot
to the registry (`<artifacts>/ablations/<id>/`), optionally to docs/ablation.md, and as Prefect artifacts.

Trials run one after another by default (a 2-core CPU trains one model at a time); `runner="dask"` or
`"ray"` fans them out to worker processes (`flows/runners.py`: a local cluster, or an existing one at
`address`). Trial results are cached in the registry (`<artifacts>/ablations/trials/`), which every worker
shares, so a trial finished anywhere is never recomputed.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from bellm.ablation import (
    AblationConfig,
    bootstrap_all,
    conclusion,
    dev_choice,
    grid,
    mean_over_seeds,
    plot,
    table_rows,
    to_csv,
    to_markdown,
)
from bellm.config import RunConfig
from bellm.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from bellm.paths import REPO_ROOT
from bellm.profiles import build_config
from bellm.registry import root_dir
from bellm_app.flows.runners import Runner, run_trials
from bellm_app.tasks.ablation import run_trial
from bellm_app.tasks.data import prepare_data
from bellm_app.tasks.train import resolve_model


def trials_store(artifacts_dir: str | None) -> Path:
    """Where trial results (and their cache records) live: in the registry, shared by every worker."""
    return root_dir(artifacts_dir) / "ablations" / "trials"


def _label(trial: dict[str, Any], seeded: bool) -> str:
    """`trained:k2-last` (one seed), `trained:k2-last:s43` (several)."""
    name = f"{'trained' if trial['trained'] else 'zero_shot'}:k{trial['k']}-{trial['pooling']}"
    return f"{name}:s{trial['seed']}" if seeded and trial["trained"] else name


def with_seed(cfg: RunConfig, seed: int) -> RunConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})


@flow(name="bellm-ablation", log_prints=True)
def bellm_ablation(
    profile: str = "quick",
    overrides: dict[str, Any] | None = None,
    ablation: dict[str, Any] | None = None,
    runner: str = "sequential",
    address: str | None = None,
    workers: int | None = None,
    threads_per_trial: int | None = None,
    write_docs: bool = False,
) -> dict[str, Any]:
    """Sweep k × pooling on one base config. `ablation`: AblationConfig fields (ks, poolings, steps,
    table_suite, max_eval_pairs, ...). Trials are cached: a restarted sweep runs only the missing ones.
    `runner`/`address`/`workers`/`threads_per_trial`: where trials run (`flows.runners.Runner`)."""
    log = get_run_logger()
    cfg = build_config(profile, overrides or {})
    abl = AblationConfig.model_validate(ablation or {})
    data = prepare_data(cfg)
    base = resolve_model(cfg.model.source)
    # Seed-major: every (k, pooling) of the first seed finishes before the second seed starts. Zero-shot
    # trials do not train, so one seed is enough for them.
    seeds = abl.seeds or [cfg.train.seed]
    jobs = [(t.k, t.pooling, True, s) for s in (seeds if abl.train else []) for t in grid(abl)]
    jobs += [(t.k, t.pooling, False, seeds[0]) for t in (grid(abl) if abl.zero_shot else [])]
    ad = abl.model_dump()
    where = Runner(runner, address, workers, threads_per_trial)
    trial = run_trial.with_options(result_storage=trials_store(cfg.artifacts_dir))
    calls = [
        dict(
            base=with_seed(cfg, s),
            ablation=ad,
            k=k,
            pooling=p,
            trained=trained,
            data_sha256=data["sha256"],
            base_sha256=base["sha256"],
            threads=where.trial_threads(),
        )
        for k, p, trained, s in jobs
    ]
    done = run_trials(trial, calls, where)
    outs = [{**o, "seed": job[3]} for (o, _), job in zip(done, jobs, strict=True)]
    # Which trials were reused from an earlier (possibly interrupted) sweep, and which ran now.
    reuse = {_label(o, len(seeds) > 1): state for o, (_, state) in zip(outs, done, strict=True)}
    log.info("trial states: %s", reuse)

    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for o in outs:  # per (trial, trained|zero_shot): its outputs in seed order
        grouped.setdefault((f"k{o['k']}-{o['pooling']}", "trained" if o["trained"] else "zero_shot"), []).append(o)
    trials: dict[str, dict[str, Any]] = {}
    for (name, key), group in grouped.items():
        t = trials.setdefault(name, {"k": group[0]["k"], "pooling": group[0]["pooling"]})
        t[key] = mean_over_seeds([o["result"] for o in group])
        t[f"{key}_selection"] = mean_over_seeds([o["selection"] for o in group])
        t[f"{key}_raw"] = group
        # `<key>_train`/`<key>_worker` keep their one-seed form (the first seed's); every seed's: `*_by_seed`
        t[f"{key}_train"], t[f"{key}_worker"] = group[0]["train"], group[0].get("worker")
        t[f"{key}_train_by_seed"] = [o["train"] for o in group]
        t[f"{key}_worker_by_seed"] = [o.get("worker") for o in group]
        t[f"{key}_seeds"] = [o["seed"] for o in group]
    cis = bootstrap_all(trials, abl.bootstrap, abl.seed)
    rows = {key: table_rows(trials, cis, key) for key in ("trained", "zero_shot")}

    sweep_id = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    out = root_dir(cfg.artifacts_dir) / "ablations" / sweep_id
    out.mkdir(parents=True)
    plot(trials, cis, str(out / "ablation.png"), title=f"{cfg.model.source}: STS avg vs k ({abl.steps} steps/trial)")
    md = render(cfg, abl, rows, sweep_id)
    write_text_atomic(out / "ablation.md", md)
    for key, r in rows.items():
        write_text_atomic(out / f"ablation_{key}.csv", to_csv(r))
    slim = {n: {k: v for k, v in t.items() if not k.endswith("_raw")} for n, t in trials.items()}
    write_json_atomic(
        out / "ablation.json", {"config": cfg.model_dump(mode="json"), "ablation": ad, "trials": slim, "cis": cis}
    )
    if write_docs:
        docs = REPO_ROOT / "docs"
        write_text_atomic(docs / "ablation.md", md)
        write_bytes_atomic(docs / "ablation.png", (out / "ablation.png").read_bytes())
    for key, r in rows.items():
        if r:
            create_table_artifact(
                r, key=f"bellm-ablation-{key.replace('_', '-')}", description=f"ablation {sweep_id} ({key})"
            )
    create_markdown_artifact(md, key="bellm-ablation-report", description=f"ablation {sweep_id}")
    log.info("ablation written to %s", out)
    workers = {_label(o, len(seeds) > 1): o.get("worker") for o in outs}
    return {"dir": str(out), "rows": rows, "cis": cis, "trial_states": reuse, "trial_workers": workers}


def render(cfg: Any, abl: AblationConfig, rows: dict[str, list[dict[str, Any]]], sweep_id: str) -> str:
    budget = (
        f"{abl.steps} LoRA steps/trial (batch {cfg.train.batch_size}, lr {cfg.train.lr}, "
        f"{_seeds_text(abl.seeds or [cfg.train.seed])}, "
        f"LoRA r={cfg.lora.r} on {'all' if cfg.lora.layers is None else f'the last {cfg.lora.layers}'} layers)"
    )
    suite = abl.table_suite if isinstance(abl.table_suite, str) else ", ".join(abl.table_suite)
    seeds = abl.seeds or [cfg.train.seed]
    paired = (
        f"95% paired bootstrap interval over pairs ({abl.bootstrap} resamples)"
        if len(seeds) == 1
        else f"Δ and every score are means over the {len(seeds)} seeds (each seed paired with the k=0 trial of "
        f"the same seed); 95% paired bootstrap interval over pairs ({abl.bootstrap} resamples, the same pairs "
        "for every seed)"
    )
    parts = [
        f"# Ablation {sweep_id}: where does backward dependency help?\n",
        f"Model `{cfg.model.source}`"
        + (f" (bottom {cfg.encoder.keep_layers} layers kept; k counts from their top)" if cfg.encoder.keep_layers
           else "")
        + f", prompt `{cfg.encoder.prompt}`, max length {cfg.encoder.max_length}. "
        f"Budget: {budget}. Table suite: {suite}"
        + (f" (first {abl.max_eval_pairs} pairs per task)" if abl.max_eval_pairs else "")
        + f"; selection on {abl.selection_suite}. Δ = Spearman x100 minus the k=0 trial with the same pooling; "
        f"{paired}.\n",
        "![ablation](ablation.png)\n",
    ]
    for key, title in (("trained", "Trained"), ("zero_shot", "Zero-shot (no training)")):
        if rows[key]:
            choice = dev_choice(rows[key], abl.selection_suite)  # decided on dev only (issue 26)
            parts += [f"## {title}\n", to_markdown(rows[key]), *conclusion(rows[key]), *([choice] if choice else []),
                      ""]
    return "\n".join(parts) + "\n"


def _seeds_text(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
