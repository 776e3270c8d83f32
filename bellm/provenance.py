"""What a cached result depends on besides its inputs: the code that computed it.

Every cache key (Prefect task caches for training, evaluation and ablation trials, the training
directory, the embedding cache's model fingerprint) includes `code_fingerprint()`, so a fixed bug can
never hide behind a result cached by the buggy code. It hashes the package version and the source of
the `bellm` modules that can change the result: by default every module except those in
`NON_NUMERIC` (the CLI, the HTTP server, reports, the registry, sweep/ablation aggregation: code that
never runs on the way from text and weights to a number; a test checks that no fingerprinted module
imports one of them), so editing the server does not retrain, re-export or re-evaluate anything. The embedding
cache uses only the modules on the encoding path.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The modules that turn text into an embedding (tokenisation, masks, the network, pooling, loading).
ENCODING_MODULES: tuple[str, ...] = (
    "backbone.py", "cuda_graphs.py", "encoder.py", "masks.py", "models.py", "pooling.py", "prompts.py", "tokenize.py",
)

# Modules (files or packages, relative to `bellm/`) that no training, evaluation or export result can
# depend on: they only present, serve, store or aggregate results. tests/core/test_provenance.py checks that
# no fingerprinted module imports one of them.
# `profiles.py` only builds a `RunConfig`, and the configuration itself is in every key: editing a profile changes
# the key of exactly the results whose settings it changes (a profile set to a sweep trial's settings reuses the
# trial's training), never of the others.
NON_NUMERIC: tuple[str, ...] = (
    "ablation.py", "cli", "gates.py", "liveness.py", "parentwatch.py", "profiles.py", "registry.py", "report.py",
    "serve", "sweep.py",
)


def _numeric(f: Path) -> bool:
    rel = f.relative_to(PACKAGE_DIR)
    return rel.parts[0] not in NON_NUMERIC


@functools.cache
def code_fingerprint(modules: tuple[str, ...] | None = None) -> str:
    """sha256 (16 hex) of the bellm version and the source files under `bellm/` that can change a result
    (every module but `NON_NUMERIC`), or just `modules`."""
    from bellm import __version__

    files = (
        [f for f in sorted(PACKAGE_DIR.rglob("*.py")) if _numeric(f)]
        if modules is None
        else [PACKAGE_DIR / m for m in modules]
    )
    h = hashlib.sha256(__version__.encode())
    for f in files:
        h.update(str(f.relative_to(PACKAGE_DIR)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
