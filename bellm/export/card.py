"""The model card `README.md` of an exported variant (its `bellm.json` is written by `bellm.contract`)."""

from __future__ import annotations

from typing import Any


def model_card(c: dict[str, Any], report: dict[str, Any]) -> str:
    """README.md beside the model: what it is, how to call it without bellm, how it was verified."""
    k, n = c["bidirectional_layers"], c["num_layers"]
    span = ""
    if "span_mask" in c["inputs"]:
        span = "\nfeeds['span_mask'] = span  # 1 on the sentence tokens (see bellm.json)"
    op = "Attention is_causal=0" if c["attention_op"] == "onnx" else "MultiHeadAttention unidirectional=0"
    gates = "\n".join(f"- {name}: {value}" for name, value in report.items())
    return f"""# bellm sentence encoder ({c['variant']})

A decoder LLM (`{c['base_model']}`) turned into a sentence encoder the BeLLM way: the last **{k} of {n}**
attention layers are bidirectional (ONNX `{op}`),
the others causal; `{c['pooling']}` pooling of the prompted sentence, L2-normalised inside the graph.

| field | value |
|---|---|
| prompt | `{c['prompt']}` |
| max_length | {c['max_length']} tokens (prompt included) |
| dim | {c['dim']} |
| variant | {c['variant']} ({c['providers']}) |
| opset / ONNX IR version / attention op | {c['opset']} / {c['ir_version']} / {c['attention_op']} |
| base model sha256 | `{c['base_model_sha256']}` |
| adapter sha256 | `{c['adapter_sha256']}` |

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

Truncation (`{c['truncation_rule']}`): {c['truncation']}

With bellm installed, `bellm.runtime.OnnxEncoder(".")` does all this
(dedupe, length-sorted batching, truncation) and imports no torch.

## Verification at export

{gates}
"""
