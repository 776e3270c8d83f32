"""`--adapter` is authoritative: encode / eval / export rebuild exactly the encoder the adapter was trained as.

A tiny adapter is trained with non-default k, pooling, prompt and max length; every command given only
`--adapter` must reproduce `load_trained_encoder`, and a flag that contradicts the adapter is an error unless
`--override-adapter` says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bellm.cli import _register, app
from bellm.profiles import build_config

_register()
runner = CliRunner()
# The reference encodes in float32; `--dtype auto` (the CLI default) is bf16 on a CPU with native bf16.
FP32 = ["--dtype", "float32"]
TEXTS = ["A man is playing a guitar.", "Two dogs run across a field in the snow, barking loudly at a bird.", "Hi."]
SETTINGS = {"bidirectional_layers": 3, "pooling": "mean", "prompt": "bellm", "max_length": 20}


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from bellm.training import train

    cfg = build_config("smoke", {"model": {"source": str(tiny_model_dir)}, "train": {"progress": False},
                                 "encoder": SETTINGS, "data": {"max_eval_pairs": 16}})
    return train(cfg, tmp_path_factory.mktemp("adapter-run")).adapter_dir


@pytest.fixture(scope="module")
def reference(adapter: Path):
    from bellm.training import load_trained_encoder

    enc = load_trained_encoder(adapter)
    assert (enc.k, enc.pooling, enc.max_length) == (3, "mean", 20) and enc.template.startswith("The representative")
    return enc


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))


def test_encode_reproduces_the_trained_encoder(adapter: Path, reference, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "emb.npy"
    r = runner.invoke(app, ["encode", str(src), "-o", str(out), "--adapter", str(adapter), *FP32])
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(np.load(out), reference.encode(TEXTS), atol=1e-6)
    assert reference.fingerprint in r.output


def test_eval_reproduces_the_trained_encoder(adapter: Path, reference, tmp_path: Path) -> None:
    from bellm.evaluation import evaluate

    out = tmp_path / "rep"
    r = runner.invoke(app, ["eval", "--adapter", str(adapter), "--suite", "gate", "--max-pairs", "12",
                            "--no-cache", "-o", str(out), *FP32])
    assert r.exit_code == 0, r.output
    got = json.loads((out / "metrics.json").read_text())["trained"]
    want = evaluate(reference, "gate", max_pairs=12, cache=False)
    assert got["model"] == reference.fingerprint == want["model"]
    assert got["tasks"]["stsb_dev"]["spearman"] == pytest.approx(want["tasks"]["stsb_dev"]["spearman"], abs=1e-9)


def test_export_reproduces_the_trained_encoder(adapter: Path, reference, tmp_path: Path) -> None:
    from bellm.runtime import OnnxEncoder

    out = tmp_path / "onnx"
    r = runner.invoke(app, ["export", "--adapter", str(adapter), "--variants", "fp32", "--no-sts-gate", "-o", str(out)])
    assert r.exit_code == 0, r.output
    c = json.loads((out / "fp32" / "bellm.json").read_text())
    want = reference.describe()
    for key in ("bidirectional_layers", "num_layers", "pooling", "prompt", "max_length", "adapter_sha256",
                "base_model_sha256"):
        assert c[key] == want[key], key
    got = OnnxEncoder(out).encode(TEXTS)
    np.testing.assert_allclose(got, reference.encode(TEXTS), atol=1e-4)


@pytest.mark.parametrize("flag", [["--pooling", "last"], ["-k", "2"], ["--prompt", "prompteol"],
                                  ["--max-length", "64"]])
def test_a_contradicting_flag_is_an_error(adapter: Path, tmp_path: Path, flag: list[str]) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    r = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "e.npy"), "--adapter", str(adapter), *flag])
    assert r.exit_code == 2 and "contradict" in r.output and "--override-adapter" in r.output, r.output
    assert not (tmp_path / "e.npy").exists()


def test_agreeing_flags_and_override(adapter: Path, reference, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    same = ["-k", "3", "--pooling", "mean", "--prompt", "bellm", "--max-length", "20"]
    r = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "a.npy"), "--adapter", str(adapter), *same,
                            *FP32])
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), reference.encode(TEXTS), atol=1e-6)
    r = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "b.npy"), "--adapter", str(adapter),
                            "--pooling", "last", "--override-adapter"])
    assert r.exit_code == 0, r.output
    assert np.abs(np.load(tmp_path / "b.npy") - reference.encode(TEXTS)).max() > 1e-3  # really overridden
