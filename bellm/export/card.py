"""`bellm.json` (the contract outside consumers read) and the model card `README.md` of an export."""

from __future__ import annotations

from typing import Any

import onnxruntime as ort

from bellm import __version__

PADDING_NOTE = (
    "Pad with any id and attention_mask 0, on either side: padded positions are masked out of attention and "
    "pooling, and position ids are counted over real tokens, so results are identical."
)
TRUNCATION_NOTE = (
    "Texts whose prompted form exceeds max_length tokens are truncated at the end of the sentence span (the "
    "prompt is kept whole); see bellm.tokenize.encode_one."
)
PROVIDERS = {"fp32": "CPU or CUDA", "fp16": "CUDA (also runs on ORT CPU, slowly)", "int8": "CPU"}


def contract(
    describe: dict[str, Any],
    variant: str,
    attention_op: str,
    opset: int,
    inputs: list[str],
    model_sha256: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """bellm.json. Stable names (consumers depend on them): prompt, bidirectional_layers, num_layers,
    pooling, dim, max_length, variant, opset, base_model_sha256, adapter_sha256."""
    shapes = {name: "int64 (batch, seq)" for name in inputs}
    return {
        "format": "bellm-onnx/1",
        "prompt": describe["prompt"],
        "bidirectional_layers": describe["bidirectional_layers"],
        "num_layers": describe["num_layers"],
        "pooling": describe["pooling"],
        "dim": describe["dim"],
        "max_length": describe["max_length"],
        "variant": variant,
        "opset": opset,
        "attention_op": attention_op,
        "base_model": describe.get("base_model"),
        "base_model_sha256": describe.get("base_model_sha256"),
        "adapter_sha256": describe.get("adapter_sha256"),
        "model_file": "model.onnx",
        "model_sha256": model_sha256,
        "tokenizer_file": "tokenizer.json",
        "inputs": inputs,
        "input_shapes": shapes,
        "outputs": ["sentence_embedding"],
        "output_shape": f"float32 (batch, {describe['dim']})",
        "normalized": True,
        "padding": PADDING_NOTE,
        "truncation": TRUNCATION_NOTE,
        "span_mask": (
            "1 on the sentence's tokens inside the prompt (bellm.tokenize.encode_one gives the span)"
            if "span_mask" in inputs else None
        ),
        "providers": PROVIDERS[variant],
        "exported_with": {"bellm": __version__, "onnxruntime": ort.__version__},
        **(extra or {}),
    }


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
| opset / attention op | {c['opset']} / {c['attention_op']} |
| base model sha256 | `{c['base_model_sha256']}` |
| adapter sha256 | `{c['adapter_sha256']}` |

## Use with onnxruntime + tokenizers only

```python
import json, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
cfg = json.load(open("bellm.json"))
tok = Tokenizer.from_file("tokenizer.json")
sess = ort.InferenceSession("model.onnx")
encs = [tok.encode(cfg["prompt"].format(text=s)).ids for s in ["A man plays guitar.", "Someone plays music."]]
S = max(map(len, encs))
ids = np.array([e + [0] * (S - len(e)) for e in encs], dtype=np.int64)
mask = np.array([[1] * len(e) + [0] * (S - len(e)) for e in encs], dtype=np.int64)
feeds = {{"input_ids": ids, "attention_mask": mask}}{span}
emb = sess.run(["sentence_embedding"], feeds)[0]  # (2, {c['dim']}), unit length: cosine = emb @ emb.T
```

{c['padding']} {c['truncation']} With bellm installed, `bellm.runtime.OnnxEncoder(".")` does all this
(dedupe, length-sorted batching, truncation) and imports no torch.

## Verification at export

{gates}
"""
