"""Recipe search that cannot cheat: trials are trained and *selected on development data only*.

A sweep is a named set of trials, each a few dotted overrides on one profile. Every trial trains with a
dev-set curve (STS-B dev Spearman every `eval_every` steps; the best or the last step kept, as the profile's
`train.select_best` says), and its kept adapter
is scored once more on each selection set (STS-B dev, SICK-R dev). Test splits are refused here: they
are for reporting a finished recipe (`bellm eval`, or the flow's report), never for choosing one.

Trials run through the one trial engine (`bellm.trial`: trained once per configuration, shared with `bellm run`
and the ablation); a scored trial (``result.json``, keyed by `bellm.keys.trial_key`) is never recomputed.
Pure functions for the table and plot; `run_trial` is the only one with side effects.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bellm.ablation import to_csv, to_markdown
from bellm.config import PREFIX_CACHE_GB, RunConfig
from bellm.errors import InputError
from bellm.io import read_json_object, sha256_text, write_json_atomic, write_text_atomic
from bellm.paths import STS_DIR, bellm_home, portable_path
from bellm.profiles import build_config
from bellm.splits import refuse_test_splits

log = logging.getLogger(__name__)

RESULT = "result.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SweepSpec(BaseModel):
    """A recipe search: a base profile + overrides shared by all trials, and named trial overrides."""

    model_config = ConfigDict(extra="forbid")

    profile: str = "quick"
    base: dict[str, Any] = Field(default_factory=dict, description="dotted overrides for every trial")
    trials: dict[str, dict[str, Any]] = Field(description="trial name -> dotted overrides")
    eval_every: int = Field(40, ge=1, description="dev Spearman every N steps (the learning curve)")
    dev: str = Field(str(STS_DIR / "stsb" / "dev.tsv"), description="selection set during training")
    extra_dev: list[str] = Field(
        default_factory=lambda: [str(STS_DIR / "sickr" / "dev.tsv")],
        description="further selection sets scored on each trial's kept adapter; with `dev` they make the rule "
        "(`dev_mean`, their mean, decides)",
    )
    report_dev: list[str] = Field(
        default_factory=list,
        description="development sets scored on each kept adapter and reported beside the rule, never in it (e.g. "
        "an unseen-domain dev set, to see whether a recipe trades it for in-domain gains)",
    )
    final_max_pairs: int | None = Field(None, ge=1, description="cap pairs when scoring selected adapters")
    prefix_cache_gb: float = Field(
        PREFIX_CACHE_GB, ge=0,
        description="memory for the frozen-prefix cache (bellm.frozen_prefix; 0: off): trials adapting the same top "
        "layers of one base model share the states below them; the numbers are the same either way",
    )

    @field_validator("trials")
    @classmethod
    def _names(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not v:
            raise InputError("a sweep needs at least one trial")
        bad = [n for n in v if not NAME.match(n)]
        if bad:
            raise InputError(f"trial names must be short slugs ([A-Za-z0-9_.-]): {bad}")
        return v

    @field_validator("dev", "extra_dev", "report_dev")
    @classmethod
    def _no_test(cls, v: str | list[str]) -> str | list[str]:
        refuse_test_splits([v] if isinstance(v, str) else v, "sweep selection set")
        return v

    @classmethod
    def load(cls, path: str | Path) -> SweepSpec:
        return cls.model_validate(read_json_object(path, "the sweep spec", InputError))


def scored_sets(spec: SweepSpec) -> list[str]:
    """Every set a trial's kept adapter is scored on, in order: the rule's (`dev`, `extra_dev`), then `report_dev`."""
    return [spec.dev, *spec.extra_dev, *spec.report_dev]


def rule_names(spec: SweepSpec) -> list[str]:
    """The names (`_set_name`) of the sets whose mean decides (`dev_mean`)."""
    return [_set_name(p) for p in (spec.dev, *spec.extra_dev)]


def trial_config(spec: SweepSpec, name: str) -> RunConfig:
    """The trial's full configuration: profile ← spec.base ← trial overrides ← the dev curve settings. Which step
    is kept (`train.select_best`: the curve's best, or the last) is the profile's, so a trial trains as its profile."""
    over = {**spec.base, **spec.trials[name], "train.eval_every": spec.eval_every, "data.dev_pairs": spec.dev}
    cfg = build_config(spec.profile, over)
    refuse_test_splits(cfg.data.train_pairs + cfg.data.train_triplets, f"trial {name}'s training data")
    return cfg


@functools.cache
def _base_sha256(source: str) -> str:  # once per process: the report re-keys every trial after each one
    from bellm.models import resolve_source

    return resolve_source(source, convert=False).sha256


def trial_key(spec: SweepSpec, cfg: RunConfig, data_sha256: dict[str, str] | None = None) -> str:
    """`bellm.keys.trial_key`: the trial's training (one directory per configuration, shared with `bellm run` and
    the ablation) and the selection sets it is scored on (its data is read again: an edited file is a new trial)."""
    from bellm.keys import trial_key as key
    from bellm.trial import prepare_data

    data = data_sha256 or prepare_data(cfg)["sha256"]
    return key(cfg, [[p] for p in scored_sets(spec)], True, spec.final_max_pairs, data,
               _base_sha256(cfg.model.source))


def trials_root() -> Path:
    """Where finished trials' results live (shared by every sweep: a trial is found by its key); their training
    is in the one training directory of its configuration (`bellm.keys.train_dir`)."""
    return bellm_home() / "sweeps"


def trial_dir(root: Path, spec: SweepSpec, name: str) -> Path:
    return root / f"{name}-{trial_key(spec, trial_config(spec, name))}"


def learning_curve(log_path: Path) -> list[dict[str, float]]:
    """[{step, seconds, dev}] from a train log: cumulative training seconds (dev evaluations excluded)."""
    out: list[dict[str, float]] = []
    seconds = 0.0
    for line in log_path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        seconds += float(rec.get("step_s", 0.0))
        if rec.get("dev_spearman") is not None:
            out.append({"step": rec["step"], "seconds": round(seconds, 1), "dev": rec["dev_spearman"]})
    return out


def finished_trial(spec: SweepSpec, name: str, root: Path) -> dict[str, Any] | None:
    """The cached result of one trial at its current key, or None if it has not finished."""
    done = trial_dir(root, spec, name) / RESULT
    return json.loads(done.read_text(encoding="utf-8")) if done.is_file() else None


def finished_results(spec: SweepSpec, root: Path) -> list[dict[str, Any]]:
    """Every finished trial of the spec, in spec order: what its report tabulates, however (and with however
    many `--only` runs) the trials were run."""
    return [r for r in (finished_trial(spec, n, root) for n in spec.trials) if r is not None]


def run_trial(spec: SweepSpec, name: str, root: Path, progress: bool = True) -> dict[str, Any]:
    """Train (or resume, or reuse) one trial through `bellm.trial.run_trial` and score its selected adapter on
    every selection set; the result is cached."""
    cached = finished_trial(spec, name, root)
    if cached is not None:
        return cached
    from bellm import trial

    cfg = trial_config(spec, name)
    data = trial.prepare_data(cfg)["sha256"]
    out = root / f"{name}-{trial_key(spec, cfg, data)}"
    sets = scored_sets(spec)
    res = trial.run_trial(cfg, [[p] for p in sets], max_pairs=spec.final_max_pairs, data_sha256=data,
                          base=_base_sha256(cfg.model.source), prefix_cache_gb=spec.prefix_cache_gb, progress=progress)
    curve = learning_curve(Path(res.train["log"]))
    result = {
        "name": name,
        "key": out.name.rsplit("-", 1)[1],
        "overrides": spec.trials[name],
        "steps": res.train["steps"],
        "best_step": res.train["best_step"],  # the dev curve's best step
        "kept_step": res.train["best_step"] if cfg.train.select_best and res.train["best_step"] else res.train["steps"],
        "train_seconds": curve[-1]["seconds"] if curve else None,
        "wall_seconds": round(res.train["seconds"], 1),
        "curve": curve,
        "selection": {_set_name(p): next(iter(r["tasks"].values()))["spearman"] for p, r in zip(sets, res.results,
                                                                                                 strict=True)},
        "prefix_hit_share": res.prefix_hit_share,
        "adapter": res.train["adapter_dir"],  # in the training directory of the configuration
    }
    write_json_atomic(out / RESULT, result)
    return result


def _set_name(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}_{p.stem}"


def table_rows(results: Sequence[Mapping[str, Any]], rule: Sequence[str]) -> list[dict[str, Any]]:
    """One row per trial: its overrides, the deciding sets' scores (`rule`: their names) and their mean `dev_mean`
    (what decides), the other sets as `report:` columns, kept and best step, budget; sorted by `dev_mean`."""
    rows = []
    for r in results:
        row = {"trial": r["name"], "overrides": json.dumps(r["overrides"], sort_keys=True)}
        sel = r["selection"]
        decide = [sel.get(k) for k in rule]
        row.update({f"dev:{k}": v for k, v in zip(rule, decide, strict=True)})
        row["dev_mean"] = None if None in decide else round(sum(decide) / len(decide), 2)
        row.update({f"report:{k}": v for k, v in sel.items() if k not in rule})
        row.update(kept_step=r.get("kept_step"), best_step=r["best_step"], steps=r["steps"], train_s=r["train_seconds"],
                   wall_s=r["wall_seconds"],
                   prefix_hits=r.get("prefix_hit_share"))
        rows.append(row)
    return sorted(rows, key=lambda x: -(x["dev_mean"] if x["dev_mean"] is not None else float("-inf")))


def plot(results: Sequence[Mapping[str, Any]], dest: Path) -> Path:
    """Dev Spearman against step and against training seconds, one line per trial (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bellm.io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for r in results:
        c = r["curve"]
        if not c:
            continue
        axes[0].plot([p["step"] for p in c], [p["dev"] for p in c], marker=".", label=r["name"])
        axes[1].plot([p["seconds"] for p in c], [p["dev"] for p in c], marker=".", label=r["name"])
    axes[0].set_xlabel("optimizer step")
    axes[1].set_xlabel("training seconds (dev evaluations excluded)")
    axes[0].set_ylabel("STS-B dev Spearman ×100")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Recipe search: dev learning curves")
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return dest


def write_report(results: Sequence[Mapping[str, Any]], out: Path, spec: SweepSpec) -> dict[str, Path]:
    rows = table_rows(results, rule_names(spec))
    md = (
        f"# Recipe search ({len(results)} trials, profile `{spec.profile}`)\n\n"
        f"Selected on development data only: `{portable_path(spec.dev)}` during training (every {spec.eval_every} "
        f"steps; `best_step` is the curve's best), then "
        f"{', '.join(f'`{portable_path(p)}`' for p in spec.extra_dev) or 'nothing else'} on the kept adapter "
        "(`kept_step`: the curve's best or the last step, as the trial's `train.select_best` says). "
        f"**`dev_mean`**, the mean over {', '.join(f'`{n}`' for n in rule_names(spec))}, is the rule that decides; "
        + (f"{', '.join(f'`{portable_path(p)}`' for p in spec.report_dev)} (`report:` columns) are reported "
           "beside it and never decide. " if spec.report_dev else "")
        + "Rows are sorted by `dev_mean`. "
        "`train_s` is training compute without dev evaluations; `prefix_hits` is the share of the trial's sentences "
        "whose frozen-layer states came from the process's cache (the first trial of a process fills it, so its "
        "`train_s` is higher; empty: recorded before this column existed, or the cache was off).\n\n"
        f"Base overrides: `{json.dumps(spec.base, sort_keys=True)}`\n\n"
        + to_markdown(rows)
        + "\n![curves](sweep.png)\n"
    )
    paths = {"md": out / "sweep.md", "csv": out / "sweep.csv", "json": out / "sweep.json", "png": out / "sweep.png"}
    write_text_atomic(paths["md"], md)
    write_text_atomic(paths["csv"], to_csv(rows))
    write_json_atomic(paths["json"], {"spec": spec.model_dump(), "results": list(results)})
    plot(results, paths["png"])
    return paths


def sweep_id(spec: SweepSpec) -> str:
    return sha256_text(json.dumps(spec.model_dump(exclude={"trials", "prefix_cache_gb"}), sort_keys=True))[:12]
