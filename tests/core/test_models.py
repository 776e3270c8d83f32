"""Model source resolution; the real embedded model is checked to be a working pretrained LM."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from bellm.models import ModelSourceError, load_model, resolve_source


def test_local_dir_resolves_with_fingerprint(tiny_model_dir: Path) -> None:
    res = resolve_source(str(tiny_model_dir))
    assert res.kind == "local" and len(res.sha256) == 64
    assert resolve_source(str(tiny_model_dir)).sha256 == res.sha256


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="GGUF file not found"):
        resolve_source(str(tmp_path / "x.gguf"))
    with pytest.raises(ModelSourceError, match="no config.json"):
        resolve_source(str(tmp_path))
    with pytest.raises(ModelSourceError, match="unknown model source"):
        resolve_source("not-a-model")


def test_embedded_is_cached_safetensors(embedded_dir: Path) -> None:
    assert (embedded_dir / "model.safetensors").is_file()
    assert json.loads((embedded_dir / "bellm_source.json").read_text())["sha256"] == embedded_dir.name
    cfg = json.loads((embedded_dir / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 30 and cfg["hidden_size"] == 576
    assert cfg["num_attention_heads"] == 9 and cfg["num_key_value_heads"] == 3
    assert "quantization_config" not in cfg


@pytest.mark.slow
def test_embedded_model_is_a_real_pretrained_lm() -> None:
    import torch

    from bellm.models import load_tokenizer

    model = load_model("smollm2-135m")
    tok = load_tokenizer("smollm2-135m")
    n_params = sum(p.numel() for p in model.model.parameters())
    assert 134_000_000 < n_params < 135_000_000
    ids = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=6, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids.input_ids.shape[1] :])

    text = (
        "The weather was pleasant this morning, so we decided to walk to the market and buy some fresh "
        "bread, cheese and fruit for lunch."
    )
    words = text.split()
    random.Random(0).shuffle(words)

    def ppl(s: str) -> float:
        enc = tok(s, return_tensors="pt")
        with torch.no_grad():
            return math.exp(model(**enc, labels=enc.input_ids).loss.item())

    normal, shuffled = ppl(text), ppl(" ".join(words))
    assert normal < 60 and shuffled > 4 * normal, (normal, shuffled)


def test_hub_ids_are_pinned_to_the_commit_they_resolve_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id used to fingerprint as "hub:<id>": a new push to the hub reused every cached result.
    The hub is unreachable here, so its answer (the commit of the requested revision) is stood in for."""
    import huggingface_hub

    import bellm.models as models

    seen = []

    class Api:
        def model_info(self, repo_id: str, revision: str | None = None):  # noqa: ANN202
            seen.append((repo_id, revision))
            return type("Info", (), {"sha": "c0ffee" + (revision or "main")})()

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    res = models.resolve_source("org/model")
    assert res.kind == "hub" and res.path == "org/model" and res.revision == "c0ffeemain"
    assert res.sha256 == "hub:org/model@c0ffeemain"
    pinned = models.resolve_source("org/model@v1")
    assert seen[-1] == ("org/model", "v1") and pinned.sha256 != res.sha256


def test_concurrent_first_users_convert_a_gguf_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes (or xdist workers) that both find no cached conversion must not both convert and
    rename over each other: one converts, the other waits and reuses it."""
    import threading
    import time

    import bellm.models as models

    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF not really")
    calls: list[int] = []

    def slow_convert(src: Path, dest: Path, digest: str) -> None:
        calls.append(threading.get_ident())
        time.sleep(0.5)  # both threads are past the first cache check by now
        dest.mkdir(parents=True)
        (dest / models._MARKER).write_text(json.dumps({"sha256": digest}))

    monkeypatch.setattr(models, "_convert_gguf", slow_convert)
    results: list[tuple[Path, str]] = []
    threads = [threading.Thread(target=lambda: results.append(models._gguf_cache_dir(gguf))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2 and results[0] == results[1]
