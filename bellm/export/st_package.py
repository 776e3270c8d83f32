"""sentence-transformers files beside an ONNX variant, so `SentenceTransformer(dir, trust_remote_code=True)`
loads it (module: `bellm.st_module`, copied in as `bellm_st.py` with `bellm.tokenize` as `bellm_tokenize.py`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bellm import __version__
from bellm.io import write_json_atomic, write_text_atomic

PACKAGE = Path(__file__).resolve().parent.parent
MODULE_FILE, TOKENIZE_FILE = "bellm_st.py", "bellm_tokenize.py"
CLASS_REF = "bellm_st.BellmOnnx"
SHIPPED = ("tokenize", "prompts", "errors")  # stdlib/numpy/tokenizers-only bellm modules the module needs
_BELLM_IMPORT = re.compile(r"^\s*(from|import)\s+bellm\b", re.M)


def _rewrite(src: str, name: str) -> str:
    """Point `from bellm.<m> import` / `from .<m> import` at the shipped copies (`from .bellm_<m> import`)."""
    for m in SHIPPED:
        src = src.replace(f"from bellm.{m} import ", f"from .bellm_{m} import ")
        src = src.replace(f"from .{m} import ", f"from .bellm_{m} import ")
    if _BELLM_IMPORT.search(src):
        raise RuntimeError(f"{name} imports a bellm module that is not shipped with the export ({SHIPPED})")
    return src


def module_source() -> str:
    """bellm/st_module.py with its imports pointing at the shipped copies."""
    return _rewrite((PACKAGE / "st_module.py").read_text(), "bellm/st_module.py")


def write_sentence_transformers(d: Path) -> list[str]:
    """modules.json, config_sentence_transformers.json and the module's code in variant directory `d`."""
    write_text_atomic(d / MODULE_FILE, module_source())
    for m in SHIPPED:
        write_text_atomic(d / f"bellm_{m}.py", _rewrite((PACKAGE / f"{m}.py").read_text(), f"bellm/{m}.py"))
    write_json_atomic(d / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": CLASS_REF}])
    write_json_atomic(d / "config_sentence_transformers.json", {
        "__version__": {"bellm": __version__},
        "model_type": "SentenceTransformer",
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    return [MODULE_FILE, *(f"bellm_{m}.py" for m in SHIPPED), "modules.json", "config_sentence_transformers.json"]


def is_sentence_transformers_dir(d: Path) -> bool:
    modules = d / "modules.json"
    return modules.is_file() and json.loads(modules.read_text())[0]["type"] == CLASS_REF
