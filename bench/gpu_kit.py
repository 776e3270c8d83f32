"""The GPU benchmark kit: pack what the GPU machine lacks into parts of <= 60 MB, then assemble and run it there.

The GPU machine has no network and takes at most ~64 MiB per call (ignored files stay between calls while it is
warm), so everything it lacks travels as numbered parts, one carry path each:

* the embedded model's GGUF (98 MB) and the `gguf` module transformers reads it with,
* a trained LoRA adapter (optional: its STS-B dev Spearman is measured),
* `onnxruntime-gpu` (1.31.1 links CUDA 13: libcublasLt.so.13, libcudart.so.13, and cuDNN 9 at run time) as
  its extracted wheel without the TensorRT provider and the C-API library (the Python module needs neither).

`pack` (here) tars them, compresses (zstd, else xz), splits into `OUT/p00/ ... OUT/pNN/` with `kit.json` (the
sha256 of every part and of the whole) in each. `run` (there) joins the parts, verifies every sha256, unpacks,
puts the unpacked `site/` first on PYTHONPATH and runs, each step in its own process with its result or error
recorded: `bench/gpu.py` (PyTorch bf16 vs ORT CUDA fp16, batch 1/32/128/512, fidelity), STS-B dev of the
adapter (PyTorch bf16 and ORT fp16), a few training steps; one JSON.

    .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 -d .whl onnxruntime-gpu==1.31.1      # if PyPI is reachable
    .venv/bin/python bench/gpu_kit.py pack --wheel .whl/onnxruntime_gpu-*.whl [--adapter <run>/adapter]
    # on the GPU machine, one `run` per part carrying [".gpukit/pNN"] (e.g. `true`), then:
    python3 bench/gpu_kit.py run --parts .gpukit --out $OUT/gpu_kit.json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PART_BYTES = 60_000_000
KIT_FILE = "kit.json"
# dropped from the onnxruntime-gpu wheel: the TensorRT provider (TensorRT is not on the machine) and the C-API
# shared library (for C/C++ consumers; the Python module links its own copy of the runtime)
DROP_FROM_WHEEL = ("libonnxruntime_providers_tensorrt.so", "libonnxruntime.so")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _wheel_members(wheel: Path) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(kept (name, bytes) of the wheel, dropped names)."""
    kept, dropped = [], []
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            base = Path(info.filename).name
            if info.is_dir():
                continue
            if any(base == d or base.startswith(d + ".") for d in DROP_FROM_WHEEL):
                dropped.append(info.filename)
                continue
            kept.append((info.filename, z.read(info)))
    return kept, dropped


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _compress(src: Path, codec: str) -> Path:
    if codec == "zstd":
        subprocess.run(["zstd", "-q", "-f", "-10", "-T0", str(src), "-o", str(src) + ".zst"], check=True)
        return Path(str(src) + ".zst")
    import lzma

    dst = Path(str(src) + ".xz")
    with src.open("rb") as f, lzma.open(dst, "wb", preset=6) as g:
        shutil.copyfileobj(f, g, 1 << 20)
    return dst


def pack(out: Path, gguf: Path | None, adapter: Path | None, wheel: Path | None, part_bytes: int = PART_BYTES,
         codec: str | None = None, extra_site: list[Path] | None = None) -> dict[str, Any]:
    """Build the parts under `out` (replaced); returns the manifest written to every part's kit.json."""
    codec = codec or ("zstd" if shutil.which("zstd") else "xz")
    contents: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "kit.tar"
        with tarfile.open(tar_path, "w") as tar:
            if gguf is not None:
                tar.add(gguf, f"model/{gguf.name}")
                contents["model"] = {"file": f"model/{gguf.name}", "sha256": sha256(gguf)}
            if adapter is not None:
                tar.add(adapter, "adapter")
                contents["adapter"] = {"dir": "adapter", "files": sorted(p.name for p in adapter.iterdir())}
            if wheel is not None:
                kept, dropped = _wheel_members(wheel)
                for name, data in kept:
                    _add_bytes(tar, f"site/{name}", data, 0o755 if name.endswith(".so") or ".so." in name else 0o644)
                contents["wheel"] = {"file": wheel.name, "sha256": sha256(wheel), "dropped": dropped,
                                     "kept_files": len(kept), "kept_bytes": sum(len(d) for _, d in kept)}
            for pkg in extra_site or []:  # pure-Python packages the machine may lack (e.g. gguf)
                tar.add(pkg, f"site/{pkg.name}", filter=lambda t: None if "__pycache__" in t.name else t)
                contents.setdefault("site_packages", []).append(pkg.name)
        blob = _compress(tar_path, codec)
        out = Path(out)
        if out.exists():
            shutil.rmtree(out)
        parts = []
        with blob.open("rb") as f:
            for i, chunk in enumerate(iter(lambda: f.read(part_bytes), b"")):
                d = out / f"p{i:02d}"
                d.mkdir(parents=True)
                (d / f"part{i:02d}").write_bytes(chunk)
                parts.append({"dir": d.name, "file": f"part{i:02d}", "bytes": len(chunk),
                              "sha256": hashlib.sha256(chunk).hexdigest()})
        manifest = {"codec": codec, "sha256": sha256(blob), "bytes": blob.stat().st_size,
                    "tar_bytes": tar_path.stat().st_size, "parts": parts, "contents": contents}
    for p in parts:
        (out / p["dir"] / KIT_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


class KitError(RuntimeError):
    """A part is missing or corrupt: nothing is unpacked."""


def assemble(parts_root: Path, dest: Path) -> dict[str, Any]:
    """Join the parts under `parts_root`, verify every sha256, unpack into `dest`; returns the manifest."""
    kits = sorted(Path(parts_root).glob(f"*/{KIT_FILE}"))
    if not kits:
        raise KitError(f"no {KIT_FILE} under {parts_root}: carry the parts (p00, p01, ...) first")
    manifest = json.loads(kits[0].read_text())
    missing = [p["dir"] for p in manifest["parts"] if not (parts_root / p["dir"] / p["file"]).is_file()]
    if missing:
        raise KitError(f"parts not here yet: {missing} (carry each, one call per part, on a warm machine)")
    dest.mkdir(parents=True, exist_ok=True)
    blob = dest / ("kit.tar." + ("zst" if manifest["codec"] == "zstd" else "xz"))
    h = hashlib.sha256()
    with blob.open("wb") as out:
        for p in manifest["parts"]:
            data = (parts_root / p["dir"] / p["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != p["sha256"]:
                raise KitError(f"{p['dir']}/{p['file']}: sha256 mismatch (corrupt or from another pack)")
            h.update(data)
            out.write(data)
    if h.hexdigest() != manifest["sha256"]:
        raise KitError("the joined parts do not match the pack's sha256")
    if manifest["codec"] == "zstd":
        if shutil.which("zstd"):
            tar_bytes = subprocess.run(["zstd", "-d", "-c", str(blob)], check=True, capture_output=True).stdout
        else:
            import zstandard  # type: ignore[import-not-found]

            tar_bytes = zstandard.ZstdDecompressor().stream_reader(blob.open("rb")).read()
    else:
        import lzma

        tar_bytes = lzma.decompress(blob.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        tar.extractall(dest, filter="data")
    blob.unlink()
    model = manifest["contents"].get("model")
    if model and sha256(dest / model["file"]) != model["sha256"]:
        raise KitError(f"{model['file']}: sha256 mismatch after unpacking")
    return manifest


def _step(name: str, cmd: list[str], env: dict[str, str], timeout: float, result: dict[str, Any],
          json_out: Path | None = None) -> None:
    """Run one measurement in its own process; record its JSON (if it wrote one), or its error and tail."""
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        entry: dict[str, Any] = {"rc": p.returncode, "seconds": round(time.perf_counter() - t, 1)}
        if p.returncode != 0:
            entry["tail"] = (p.stdout + p.stderr)[-3000:]
        if json_out is not None and json_out.is_file():
            entry["result"] = json.loads(json_out.read_text())
    except subprocess.TimeoutExpired:
        entry = {"rc": None, "error": f"timed out after {timeout:.0f} s"}
    result[name] = entry


def run(parts: Path, out: Path, dest: Path, batches: str, train_steps: int, budget_s: float) -> dict[str, Any]:
    result: dict[str, Any] = {"command": " ".join(sys.argv)}
    t0 = time.perf_counter()
    manifest = assemble(parts, dest)
    result["assemble"] = {"seconds": round(time.perf_counter() - t0, 1), "contents": manifest["contents"]}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(dest / "site"), str(ROOT),
                                                          os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    model = str(dest / manifest["contents"]["model"]["file"]) if "model" in manifest["contents"] else "smollm2-135m"
    adapter = ["--adapter", str(dest / "adapter")] if "adapter" in manifest["contents"] else []
    work = Path(tempfile.mkdtemp(prefix="bellm-gpukit-"))
    py = sys.executable
    _step("gpu", [py, "bench/gpu.py", "--model", model, *adapter, "--batches", batches, "--work", str(work / "exp"),
                  "--budget-s", str(budget_s * 0.6), "--out", str(work / "gpu.json")], env, budget_s * 0.7, result,
          work / "gpu.json")
    if adapter:
        _step("sts_dev", [py, "bench/gpu_kit.py", "sts", "--model", model, *adapter, "--export", str(work / "exp"),
                          "--out", str(work / "sts.json")], env, budget_s * 0.2, result, work / "sts.json")
    _step("train", [py, "bench/train_throughput.py", "--steps", str(train_steps), "--threads", str(os.cpu_count()),
                    "--set", f"model.source={model}", "--out", str(work / "train.json")], env, budget_s * 0.2, result,
          work / "train.json")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def sts(model: str, adapter: str | None, export: Path, out: Path) -> None:
    """STS-B dev Spearman of the adapter: PyTorch bf16 on CUDA and the ORT fp16 export gpu.py built (if any)."""
    import onnxruntime as ort
    import torch

    from bellm.encoder import load_encoder
    from bellm.evaluation import evaluate

    res: dict[str, Any] = {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    enc = load_encoder(model, adapter=adapter, dtype="bfloat16" if device == "cuda" else None, device=device)
    res[f"pytorch_{'bf16' if device == 'cuda' else 'fp32'}_{device}"] = evaluate(enc, "gate", cache=False)
    fp16 = export / "onnx" / "fp16"
    if fp16.is_dir() and "CUDAExecutionProvider" in ort.get_available_providers():
        from bellm.runtime import OnnxEncoder

        res["ort_fp16_cuda"] = evaluate(OnnxEncoder(fp16, ["CUDAExecutionProvider"]), "gate", cache=False)
    out.write_text(json.dumps({k: v["tasks"]["stsb_dev"]["spearman"] for k, v in res.items()}, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="build the parts here")
    p.add_argument("--out", type=Path, default=ROOT / ".gpukit")
    p.add_argument("--gguf", type=Path, default=None, help="default: the embedded model's GGUF")
    p.add_argument("--no-model", action="store_true", help="leave the model out")
    p.add_argument("--adapter", type=Path, default=None)
    p.add_argument("--wheel", type=Path, default=None, help="the onnxruntime-gpu wheel (e.g. 1.31.1, cp312)")
    p.add_argument("--part-mb", type=float, default=PART_BYTES / 1e6)
    p.add_argument("--codec", choices=("zstd", "xz"), default=None)
    r = sub.add_parser("run", help="assemble and measure on the GPU machine")
    r.add_argument("--parts", type=Path, default=ROOT / ".gpukit")
    r.add_argument("--dest", type=Path, default=Path(tempfile.gettempdir()) / "bellm-gpukit")
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "bench" / "results")) / "gpu_kit.json")
    r.add_argument("--batches", default="1,32,128,512")
    r.add_argument("--train-steps", type=int, default=6)
    r.add_argument("--budget-s", type=float, default=540.0)
    s = sub.add_parser("sts", help="(used by run) STS-B dev of the adapter on the GPU")
    s.add_argument("--model", required=True)
    s.add_argument("--adapter", default=None)
    s.add_argument("--export", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "pack":
        gguf = None
        if not a.no_model:
            from bellm.models import embedded_gguf_path

            gguf = a.gguf or embedded_gguf_path()
        site = []
        try:
            import gguf as gguf_pkg  # transformers' GGUF reader: pure Python, often missing on GPU images

            site.append(Path(gguf_pkg.__file__).parent)
        except ImportError:
            pass
        m = pack(a.out, gguf, a.adapter, a.wheel, int(a.part_mb * 1e6), a.codec, site)
        print(json.dumps({k: m[k] for k in ("codec", "bytes", "sha256")} | {"parts": [p["dir"] for p in m["parts"]]},
                         indent=2))
    elif a.cmd == "run":
        print(json.dumps(run(a.parts, a.out, a.dest, a.batches, a.train_steps, a.budget_s), indent=2))
    else:
        sts(a.model, a.adapter, a.export, a.out)


if __name__ == "__main__":
    main()
