"""The Hub-style model card `README.md` of an exported variant (its `bellm.json` is written by `bellm.contract`).

The card has YAML front matter the Hugging Face Hub understands (`library_name`, `base_model`, `license`,
`pipeline_tag: sentence-similarity`, `tags`, and a `model-index` with the run's STS results, written with
`huggingface_hub`'s card utilities), then the recipe, the data with licences, and usage from onnxruntime,
`bellm serve` and sentence-transformers. `run_card_info` gathers a run's facts (adapter bellm.json,
metrics.json) from files, so cards can be written by any step that has the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bellm.models import hub_id
from bellm.sts import TASK_LABELS

# Hub dataset ids of the STS tasks (MTEB's copies; bellm scores SentEval-style "all" sets, see docs/evaluation.md).
HUB_DATASETS = {
    "sts12": "mteb/sts12-sts", "sts13": "mteb/sts13-sts", "sts14": "mteb/sts14-sts", "sts15": "mteb/sts15-sts",
    "sts16": "mteb/sts16-sts", "stsb": "mteb/stsbenchmark-sts", "sickr": "mteb/sickr-sts",
}
# Licences of known base models (Hub id → the Hub's licence identifier); anything else is "other".
BASE_LICENSES = {"HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0", "meta-llama/Llama-2-7b-hf": "llama2"}
# Training / evaluation data by path fragment: (name, licence as stated by the source; data/PROVENANCE.md).
DATA_LICENCES = (
    ("stsb", "STS Benchmark", "scores CC BY-SA 4.0; sentence sources under their own terms (MSR, EMM, Stack "
     "Exchange CC BY-SA 3.0, SNLI CC BY-SA 4.0)"),
    ("sickr", "SICK", "CC BY-NC-SA 3.0"),
    ("snli", "SNLI", "CC BY-SA 4.0"),
    ("all_nli", "AllNLI (SNLI + MultiNLI)", "CC BY-SA 4.0 (SNLI); MultiNLI: OANC-based, see its data card"),
    ("sts1", "SemEval STS 2012-2016", "per-subset terms (MSR licence, EMM, CC BY-SA 3.0, ...); research use"),
)
EVAL_DATA = ("sts12", "stsb", "sickr")  # one DATA_LICENCES row each covers what the STS report uses


def data_licence(path: str) -> tuple[str, str]:
    low = path.lower()
    for key, name, licence in DATA_LICENCES:
        if key in low:
            return name, licence
    return Path(path).name, "see the data's source"


def run_card_info(adapter_dir: str | Path | None = None, run_dir: str | Path | None = None) -> dict[str, Any]:
    """What a card says about training: the adapter's bellm.json (recipe, data files) and, in a run
    directory, metrics.json's trained full-suite result and the run id. Missing files are skipped."""
    from bellm.contract import read_adapter_descriptor

    info: dict[str, Any] = {}
    if adapter_dir is not None and (Path(adapter_dir) / "bellm.json").is_file():
        meta = read_adapter_descriptor(adapter_dir).to_dict()  # provenance (lora, loss, train, data, ...) inline
        info["recipe"] = {k: meta.get(k) for k in ("lora", "loss", "train", "steps", "selected", "dev_spearman",
                                                   "prompt_name", "seed", "global_batch", "keep_layers")}
        info["data"] = meta.get("data") or []
    if run_dir is not None:
        info["run_id"] = Path(run_dir).name
        metrics = Path(run_dir) / "metrics.json"
        if metrics.is_file():
            trained = json.loads(metrics.read_text()).get("trained")
            if trained:
                info["results"] = trained
    return info


def _results(info: dict[str, Any]) -> dict[str, float]:
    """task → Spearman x100 of the run's full suite (the benchmarks' test splits). The variant gate's score is on
    dev splits (issue 26): it is shown with the gates, never published as a benchmark result."""
    tasks = (info.get("results") or {}).get("tasks") or {}
    return {t: float(v["spearman"]) for t, v in tasks.items() if t in HUB_DATASETS and v.get("spearman") is not None}


def front_matter(c: dict[str, Any], info: dict[str, Any], results: dict[str, float]) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    base = hub_id(c["base_model"]) if c.get("base_model") else None
    name = f"bellm-{info.get('run_id') or c.get('model_sha256', '')[:12]}-{c['variant']}"
    evals = [EvalResult(task_type="sentence-similarity", dataset_type=HUB_DATASETS[t],
                        dataset_name=TASK_LABELS.get(t, t), dataset_split="test", metric_type="cosine_spearman",
                        metric_value=round(v, 2), metric_name="Spearman (cosine) x100")
             for t, v in results.items() if t in HUB_DATASETS]  # the Hub's eval results are test splits only
    data = ModelCardData(
        library_name="sentence-transformers", base_model=base, pipeline_tag="sentence-similarity",
        license=BASE_LICENSES.get(base or "", "other"), language=["en"],
        tags=["bellm", "onnx", "sentence-transformers", "sentence-similarity", "feature-extraction",
              f"bidirectional-last-{c['bidirectional_layers']}", f"{c['pooling']}-pooling", c["variant"]],
        model_name=name if evals else None, eval_results=evals or None,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def _recipe(c: dict[str, Any], info: dict[str, Any]) -> str:
    r = info.get("recipe")
    if not r:
        return "Zero-shot: no adapter was trained (the base model with its last layers made bidirectional).\n"
    lora, loss, train = r.get("lora") or {}, r.get("loss") or {}, r.get("train") or {}
    rows = [
        ("base model", f"`{c['base_model']}` (sha256 `{str(c['base_model_sha256'])[:16]}…`)"),
        ("conversion", f"last {c['bidirectional_layers']} of {c['num_layers']} layers bidirectional, "
                       f"{c['pooling']} pooling, prompt `{r.get('prompt_name') or c['prompt']}`"
                       + (f"; decoder cut to its first {r['keep_layers']} layers" if r.get("keep_layers") else "")),
        ("LoRA", f"r={lora.get('r')}, alpha={lora.get('alpha')}, dropout={lora.get('dropout')}, "
                 f"layers={lora.get('layers') or 'all'}, targets={', '.join(lora.get('target_modules') or [])}"),
        ("objective", "AnglE: " + ", ".join(f"{k}={v}" for k, v in loss.items())),
        ("optimisation", f"lr={train.get('lr')}, batch={train.get('batch_size')} (global {r.get('global_batch')}), "
                         f"steps={r.get('steps')} ({r.get('selected')} on STS-B dev"
                         + (f": {r['dev_spearman']:.2f}" if isinstance(r.get("dev_spearman"), float) else "")
                         + f"), seed={r.get('seed')}"),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def _data(info: dict[str, Any]) -> str:
    lines = []
    for f in info.get("data") or []:
        name, licence = data_licence(str(f.get("path", "")))
        lines.append(f"- training ({f.get('kind')}): {name}, `{Path(str(f.get('path'))).name}`, {f.get('rows')} rows, "
                     f"sha256 `{str(f.get('sha256'))[:12]}…`; licence: {licence}")
    for key in EVAL_DATA:
        name, licence = data_licence(key)
        lines.append(f"- evaluation: {name}; licence: {licence}")
    return "\n".join(lines) + "\n\nProvenance and full licence texts: `data/PROVENANCE.md` in the bellm repository.\n"


def _results_table(results: dict[str, float], info: dict[str, Any]) -> str:
    if not results:
        return "No STS results were recorded for this export.\n"
    head = "| " + " | ".join(TASK_LABELS.get(t, t) for t in results) + " |"
    sep = "|" + "---|" * len(results)
    row = "| " + " | ".join(f"{v:.2f}" for v in results.values()) + " |"
    src = "the trained model's full suite (PyTorch), SentEval-style 'all' Spearman x100"
    return f"{head}\n{sep}\n{row}\n\nSource: {src}.\n"


def model_card(c: dict[str, Any], report: dict[str, Any], info: dict[str, Any] | None = None,
               gate_sts: dict[str, Any] | None = None) -> str:
    """README.md beside the model: Hub front matter, what it is, results, recipe, data, usage, verification."""
    info = info or {}
    results = _results(info)  # `gate_sts` (dev) is in `report`'s gate lines, not a benchmark result
    k, n = c["bidirectional_layers"], c["num_layers"]
    span = ""
    if "span_mask" in c["inputs"]:
        span = "\nfeeds['span_mask'] = span  # 1 on the sentence tokens (see bellm.json)"
    op = "Attention is_causal=0" if c["attention_op"] == "onnx" else "MultiHeadAttention unidirectional=0"
    gates = "\n".join(f"- {name}: {value}" for name, value in report.items())
    return front_matter(c, info, results) + f"""
# bellm sentence encoder ({c['variant']})

A decoder LLM (`{c['base_model']}`) turned into a sentence encoder the BeLLM way: the last **{k} of {n}**
attention layers are bidirectional (ONNX `{op}`),
the others causal; `{c['pooling']}` pooling of the prompted sentence, L2-normalised inside the graph.

| field | value |
|---|---|
| prompt | `{c['prompt']}` |
| max_length | {c['max_length']} tokens (prompt included) |
| dim | {c['dim']} |
| variant | {c['variant']} ({c['providers']}) |
| opset / ONNX IR version / attention op | {c['opset']} / {c.get('ir_version')} / {c['attention_op']} |
| base model sha256 | `{c['base_model_sha256']}` |
| adapter sha256 | `{c['adapter_sha256']}` |

## Results (STS, Spearman x100)

{_results_table(results, info)}
## Training recipe

{_recipe(c, info)}
## Data

{_data(info)}
## Use with onnxruntime + tokenizers only

```python
import json, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
cfg = json.load(open("bellm.json"))
tok = Tokenizer.from_file("tokenizer.json")
sess = ort.InferenceSession("model.onnx")
# texts whose prompted form exceeds max_length tokens: apply bellm.json's "truncation" rule first
encs = [tok.encode(cfg["prompt"].format(text=s)).ids for s in ["A man plays guitar.", "Someone plays music."]]
S = max(map(len, encs))
ids = np.array([e + [0] * (S - len(e)) for e in encs], dtype=np.int64)
mask = np.array([[1] * len(e) + [0] * (S - len(e)) for e in encs], dtype=np.int64)
feeds = {{"input_ids": ids, "attention_mask": mask}}{span}
emb = sess.run(["sentence_embedding"], feeds)[0]  # (2, {c['dim']}), unit length: cosine = emb @ emb.T
```

{c['padding']}

Truncation (`{c.get('truncation_rule')}`): {c['truncation']}

With bellm installed, `bellm.runtime.OnnxEncoder(".")` does all this
(dedupe, length-sorted batching, truncation) and imports no torch.

## Serve it over HTTP

```bash
pip install "bellm[serve]"
bellm serve . --port 8080          # OpenAI /v1/embeddings, TEI /embed, /health, /info, /metrics
curl -s localhost:8080/v1/embeddings -H 'Content-Type: application/json' -d '{{"input": ["A man plays guitar."]}}'
```

## Use with sentence-transformers

```python
from sentence_transformers import SentenceTransformer  # pip install sentence-transformers onnxruntime
model = SentenceTransformer(".", trust_remote_code=True)  # runs bellm_st.py (this directory) over model.onnx
emb = model.encode(["A man plays guitar.", "Someone plays music."])
```

The module (`bellm_st.py` + `bellm_tokenize.py`) prompts, tokenises and truncates exactly as bellm does and
runs this `model.onnx`; inference only (no torch weights to fine-tune).

## Verification at export

{gates}
"""
