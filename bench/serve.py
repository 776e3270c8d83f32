"""`bellm serve` throughput and latency next to in-process `OnnxEncoder.encode` on the same sentences.

A real `bellm serve` process (its own interpreter, so clients and server do not share a GIL) is started on
a free loopback port; C concurrent clients (httpx, asyncio) each send one-sentence `POST /v1/embeddings`
requests until every sentence was sent once. Reported per C: sentences/s, request latency p50/p99, mean
batch size (from /metrics), and the largest difference to the in-process embeddings (a correctness check).
In-process reference, same ORT thread count: `encode(all, batch_size=max_batch_size)` throughput (the
whole set sorted by length, so batches carry almost no padding) and single-sentence `encode([s])` latency
p50/p99. Per C also `encode` of the sentences in arrival order, cut into batches of the size the server
formed (its mean batch): what the model alone does with the batches C one-sentence clients can give, so
`vs_same_batches` isolates the server's own cost from the padding and small-batch cost of the workload.

Targets (issue #13): served throughput at 16 clients >= 85% of in-process; p99 at 1 client <= 1.2x the
in-process single-sentence latency. Take numbers on a quiet machine only.

    .venv/bin/python bench/serve.py artifacts/runs/<id>/onnx/fp32 [--threads 2] [--clients 1,4,16]
        [--sentences 512] [--max-wait-ms 2] [--max-batch-size 32] [--out bench/results/serve.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bellm.runtime import OnnxEncoder  # noqa: E402
from bellm.serve.config import ServeConfig  # noqa: E402
from bench.common import best_seconds, sts_sentences  # noqa: E402


def percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def in_process(enc: OnnxEncoder, texts: list[str], batch_size: int, repeats: int) -> tuple[dict, np.ndarray]:
    """The reference: best of `repeats` passes (the in-process rate varies ~10% between passes on 2 cores,
    and the best pass is the hardest reference for the server), plus single-sentence latencies."""
    enc.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    emb = enc.encode(texts, batch_size=batch_size)
    total = best_seconds(lambda: enc.encode(texts, batch_size=batch_size), repeats)
    lat = []
    for s in texts:
        t0 = time.perf_counter()
        enc.encode([s])
        lat.append(time.perf_counter() - t0)
    return {"sentences_per_s": round(len(texts) / total, 1), "single": percentiles(lat)}, emb


def same_batches(enc: OnnxEncoder, texts: list[str], size: int) -> float:
    """sentences/s of `encode` over consecutive batches of `size` texts (arrival order, no global sort)."""
    t = time.perf_counter()
    for i in range(0, len(texts), size):
        enc.encode(texts[i:i + size], batch_size=size)
    return len(texts) / (time.perf_counter() - t)


def batch_stats(url: str) -> tuple[float, float]:
    lines = httpx.get(url + "/metrics").text.splitlines()
    val = {ln.split()[0]: float(ln.split()[1]) for ln in lines if ln.startswith("bellm_batch_size_")}
    return val.get("bellm_batch_size_count", 0.0), val.get("bellm_batch_size_sum", 0.0)


async def load(url: str, texts: list[str], clients: int) -> tuple[float, list[float], np.ndarray]:
    """Every text sent once, by `clients` concurrent one-sentence clients. (wall s, latencies, embeddings)."""
    rows: dict[int, list[float]] = {}
    lat: list[float] = []
    todo = iter(range(len(texts)))

    async def client(c: httpx.AsyncClient) -> None:
        for i in todo:  # the shared iterator hands each index to exactly one client
            t0 = time.perf_counter()
            r = await c.post("/v1/embeddings", json={"input": texts[i]})
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
            rows[i] = r.json()["data"][0]["embedding"]

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        await c.post("/v1/embeddings", json={"input": "warm-up"})
        t = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        wall = time.perf_counter() - t
    out = np.array([rows[i] for i in range(len(texts))], dtype=np.float32)
    return wall, lat, out


async def load_raw(url: str, texts: list[str], clients: int) -> tuple[float, list[float], np.ndarray]:
    """`load` with a lean load generator: one keep-alive asyncio connection per client speaking HTTP/1.1 by hand
    (as wrk or oha would), so the clients take less of the 2 cores the server needs. Same requests, same
    checks; non-200 answers raise."""
    host, port = url.removeprefix("http://").split(":")
    rows: dict[int, list[float]] = {}
    lat: list[float] = []
    todo = iter(range(len(texts)))

    async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: str) -> list[float]:
        body = orjson.dumps({"input": text})
        writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        if not head[0].startswith("HTTP/1.1 200"):
            raise RuntimeError(f"server answered {head[0]!r}")
        size = next(int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:"))
        return orjson.loads(await reader.readexactly(size))["data"][0]["embedding"]

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in todo:
                t0 = time.perf_counter()
                rows[i] = await post(reader, writer, texts[i])
                lat.append(time.perf_counter() - t0)
        finally:
            writer.close()

    reader, writer = await asyncio.open_connection(host, int(port))
    await post(reader, writer, "warm-up")
    writer.close()
    t = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t
    out = np.array([rows[i] for i in range(len(texts))], dtype=np.float32)
    return wall, lat, out


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def start_server(path: str, port: int, args: argparse.Namespace) -> subprocess.Popen:
    # --plain-http: hide uvloop and httptools from the server, so uvicorn falls back to asyncio + h11
    hide = "import sys; sys.modules.update(uvloop=None, httptools=None); " if args.plain_http else ""
    cmd = [sys.executable, "-c", hide + "from bellm.cli import main; main()", "serve", path, "--port", str(port),
           "--threads", str(args.threads), "--max-wait-ms", str(args.max_wait_ms),
           "--linger-ms", str(args.linger_ms),
           "--max-batch-size", str(args.max_batch_size), "--max-queue", "100000", "--log-level", "warning",
           "--spin" if args.spin else "--no-spin"]
    if args.call_overhead_tokens is not None:
        cmd += ["--call-overhead-tokens", str(args.call_overhead_tokens)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        if proc.poll() is not None:
            raise RuntimeError(f"bellm serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # lightly: the server is timing its start-up probe meanwhile
    proc.kill()
    raise TimeoutError("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="an ONNX variant directory (or export root)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--sentences", type=int, default=512)
    defaults = ServeConfig()  # the server's defaults, so the benchmark runs what `bellm serve` runs
    ap.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms)
    ap.add_argument("--linger-ms", type=float, default=defaults.linger_ms, help="the server's --linger-ms (0: off)")
    ap.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    ap.add_argument("--spin", action=argparse.BooleanOptionalAction, default=True,
                    help="the server's onnxruntime threads busy-wait between ops (bellm serve --spin/--no-spin)")
    ap.add_argument("--plain-http", action="store_true",
                    help="serve with asyncio + h11 instead of uvloop + httptools (what the C HTTP stack brings)")
    ap.add_argument("--call-overhead-tokens", type=float, default=None,
                    help="bellm serve --call-overhead-tokens (default: measured by the server; 1e6: never cut a "
                         "batch by length, the batching before plan_chunks)")
    ap.add_argument("--client", choices=("httpx", "raw"), default="httpx",
                    help="load generator: httpx.AsyncClient, or raw keep-alive HTTP/1.1 on asyncio streams (less "
                         "client CPU on the machine the server shares)")
    ap.add_argument("--repeats", type=int, default=3, help="in-process reference: best of this many passes")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()

    texts = sts_sentences(args.sentences)
    enc = OnnxEncoder(args.export, threads=args.threads)
    ref, ref_emb = in_process(enc, texts, args.max_batch_size, args.repeats)
    print(f"in-process: {ref['sentences_per_s']} sentences/s (batch {args.max_batch_size}); single-sentence "
          f"latency p50 {ref['single']['p50_ms']} ms, p99 {ref['single']['p99_ms']} ms", flush=True)
    port = args.port
    if port == 0:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    proc = start_server(args.export, port, args)
    url = f"http://127.0.0.1:{port}"
    server_info = httpx.get(url + "/info").json()["server"]
    served = {}
    try:
        for c in (int(x) for x in args.clients.split(",")):
            n0, s0 = batch_stats(url)
            cpu_client, cpu_server = self_cpu_seconds(), proc_cpu_seconds(proc.pid)
            wall, lat, emb = asyncio.run((load_raw if args.client == "raw" else load)(url, texts, c))
            cpu_client, cpu_server = self_cpu_seconds() - cpu_client, proc_cpu_seconds(proc.pid) - cpu_server
            n1, s1 = batch_stats(url)
            mean_batch = (s1 - s0) / max(n1 - n0, 1)
            proc.send_signal(signal.SIGSTOP)  # the idle server must not disturb the in-process timing
            try:
                same = same_batches(enc, texts, max(1, round(mean_batch)))
            finally:
                proc.send_signal(signal.SIGCONT)
            served[c] = {
                "sentences_per_s": round(len(texts) / wall, 1),
                **percentiles(lat),
                "mean_batch": round(mean_batch, 2),
                # CPU seconds over the load, as a share of the machine (cores x wall): what the load generator
                # took from the model on a shared machine, and what the server used (ORT threads included)
                "client_cpu_share": round(cpu_client / (os.cpu_count() * wall), 3),
                "server_cpu_share": round(cpu_server / (os.cpu_count() * wall), 3),
                "vs_in_process": round(len(texts) / wall / ref["sentences_per_s"], 3),
                "in_process_same_batches": round(same, 1),
                "vs_same_batches": round(len(texts) / wall / same, 3),
                "max_abs_diff": float(np.abs(emb - ref_emb).max()),
            }
            print(f"{c:>3} clients: {served[c]}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    result = {
        "export": args.export, "sentences": len(texts), "threads": args.threads, "spin": args.spin,
        "repeats": args.repeats,
        "plain_http": args.plain_http, "client": args.client,
        "max_wait_ms": args.max_wait_ms, "linger_ms": args.linger_ms,
        "max_batch_size": args.max_batch_size, "call_overhead_tokens": args.call_overhead_tokens,
        "server_call_overhead_tokens": server_info.get("call_overhead_tokens"), "in_process": ref, "served": served,
        "p99_1_client_vs_single_p99": (round(served[1]["p99_ms"] / ref["single"]["p99_ms"], 3)
                                       if 1 in served else None),
        "p99_1_client_vs_single_p50": (round(served[1]["p99_ms"] / ref["single"]["p50_ms"], 3)
                                       if 1 in served else None),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "loadavg_1m": os.getloadavg()[0]},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    assert all(v["max_abs_diff"] <= 1e-5 for v in served.values()), "served embeddings differ from encode"


if __name__ == "__main__":
    main()
