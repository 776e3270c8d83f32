"""What a cached result depends on besides its inputs: the code that computed it.

Every cache key (Prefect task caches for training, evaluation and ablation trials, the training
directory, the embedding cache's model fingerprint) includes `code_fingerprint()`, so a fixed bug can
never hide behind a result cached by the buggy code. It hashes the package version and the source of
the `bellm` modules that can change the result (all of them by default; the embedding cache uses only
the modules on the encoding path, so editing e.g. the CLI does not throw away cached embeddings).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The modules that turn text into an embedding (tokenisation, masks, the network, pooling, loading).
ENCODING_MODULES: tuple[str, ...] = (
    "backbone.py", "encoder.py", "masks.py", "models.py", "pooling.py", "prompts.py", "tokenize.py",
)


@functools.cache
def code_fingerprint(modules: tuple[str, ...] | None = None) -> str:
    """sha256 (16 hex) of the bellm version and the source files under `bellm/` (or just `modules`)."""
    from bellm import __version__

    files = sorted(PACKAGE_DIR.rglob("*.py")) if modules is None else [PACKAGE_DIR / m for m in modules]
    h = hashlib.sha256(__version__.encode())
    for f in files:
        h.update(str(f.relative_to(PACKAGE_DIR)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
