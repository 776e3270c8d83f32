"""sentence-transformers files beside an ONNX variant, so `SentenceTransformer(dir, trust_remote_code=True)`
loads it (module: `bellm.st_module`, copied in as `bellm_st.py` with `bellm.tokenize` as `bellm_tokenize.py`)."""

from __future__ import annotations

import json
from pathlib import Path

from bellm import __version__
from bellm.io import write_json_atomic, write_text_atomic

PACKAGE = Path(__file__).resolve().parent.parent
MODULE_FILE, TOKENIZE_FILE = "bellm_st.py", "bellm_tokenize.py"
CLASS_REF = "bellm_st.BellmOnnx"
RELATIVE_IMPORT = "from .tokenize import "


def module_source() -> str:
    """bellm/st_module.py with its one relative import pointing at the copied tokenizer module."""
    src = (PACKAGE / "st_module.py").read_text()
    if src.count(RELATIVE_IMPORT) != 1:
        raise RuntimeError("bellm/st_module.py must import from .tokenize exactly once")
    return src.replace(RELATIVE_IMPORT, f"from .{Path(TOKENIZE_FILE).stem} import ")


def write_sentence_transformers(d: Path) -> list[str]:
    """modules.json, config_sentence_transformers.json and the module's code in variant directory `d`."""
    write_text_atomic(d / MODULE_FILE, module_source())
    write_text_atomic(d / TOKENIZE_FILE, (PACKAGE / "tokenize.py").read_text())
    write_json_atomic(d / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": CLASS_REF}])
    write_json_atomic(d / "config_sentence_transformers.json", {
        "__version__": {"bellm": __version__},
        "model_type": "SentenceTransformer",
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    return [MODULE_FILE, TOKENIZE_FILE, "modules.json", "config_sentence_transformers.json"]


def is_sentence_transformers_dir(d: Path) -> bool:
    modules = d / "modules.json"
    return modules.is_file() and json.loads(modules.read_text())[0]["type"] == CLASS_REF
