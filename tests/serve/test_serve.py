"""`bellm serve`: a real uvicorn server over the tiny export, called with httpx and the openai client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from serve_helpers import assert_runs_without, free_port, running, wait_healthy

from bellm.runtime import OnnxEncoder
from bellm.serve import build_app, resolve_target
from bellm.serve.app import create_app
from bellm.serve.batcher import PROBE_SHAPES, Batcher, fit_pass_cost, measure_call_overhead, plan_chunks
from bellm.serve.config import ServeConfig
from bellm.tokenize import Encoded, encode_one

SENTENCES = [
    "A man is playing a guitar.",
    "Two dogs run across a snowy field.",
    "The stock market fell sharply on Monday after the announcement of new tariffs on imported steel.",
    "ok",
    "",
    "A woman slices an onion in a small kitchen while the radio plays.",
    "word " * 200,  # longer than max_length=24: truncated and reported
    "Ein Mann spielt Gitarre.",
]


@pytest.fixture(scope="module")
def url(rt: OnnxEncoder):
    cfg = ServeConfig(max_batch_size=16, max_batch_tokens=256, max_wait_ms=5, max_inputs=8, max_chars=2000)
    with running(create_app(rt, cfg, "tiny")) as u:
        yield u


def post(url: str, path: str, body: object) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30)


def _partitions(items: list[int]):
    """Every set partition of `items` (brute force for small n)."""
    if not items:
        yield []
        return
    head, rest = items[0], items[1:]
    for part in _partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[head, *part[i]]] + part[i + 1:]
        yield [[head], *part]


def _cost(chunks: list[list[int]], lengths: list[int], overhead: float) -> float:
    return sum(overhead + len(c) * max(lengths[i] for i in c) for c in chunks)


def test_plan_chunks_respects_the_token_budget_and_sorts_longest_first() -> None:
    lengths = [3, 9, 5, 9, 1, 30]
    chunks = plan_chunks(lengths, max_tokens=20, overhead_tokens=1e9)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    assert [lengths[i] for c in chunks for i in c] == sorted(lengths, reverse=True)
    assert chunks[0] == [5]  # longer than the budget on its own: a chunk of one
    assert all(len(c) * lengths[c[0]] <= 20 for c in chunks[1:])
    assert len(chunks) == 3  # a huge per-pass cost: as few passes as the budget allows (30 | 9,9 | 5,3,1)


def test_plan_chunks_splits_off_an_outlier_only_when_the_padding_is_worth_a_pass() -> None:
    lengths = [17, 17, 16, 40, 17, 18, 16, 17]  # one 40-token text among ~17-token ones
    assert plan_chunks(lengths, 16384, overhead_tokens=16) == [[3], [5, 0, 1, 4, 7, 2, 6]]
    assert plan_chunks(lengths, 16384, overhead_tokens=500) == [[3, 5, 0, 1, 4, 7, 2, 6]]
    assert plan_chunks([12] * 5, 16384, overhead_tokens=0) == [[0, 1, 2, 3, 4]]  # nothing to save


def test_plan_chunks_is_optimal_against_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(60):
        n = rng.randint(1, 7)
        lengths = [rng.randint(1, 40) for _ in range(n)]
        overhead, budget = rng.choice([0.0, 4.0, 16.0, 100.0]), rng.choice([40, 80, 16384])
        got = plan_chunks(lengths, budget, overhead)
        feasible = [p for p in _partitions(list(range(n)))
                    if all(len(c) == 1 or len(c) * max(lengths[i] for i in c) <= budget for c in p)]
        assert sorted(i for c in got for i in c) == list(range(n))
        assert all(len(c) == 1 or len(c) * lengths[c[0]] <= budget for c in got)
        assert _cost(got, lengths, overhead) == pytest.approx(min(_cost(p, lengths, overhead) for p in feasible))


def test_batcher_runs_the_oldest_texts_chunk_and_replans_the_rest() -> None:
    """A long oldest text runs alone; the short ones wait one pass and run together, each row its own result."""
    shapes: list[tuple[int, int]] = []

    def run_batch(ids: np.ndarray, mask: np.ndarray, span: np.ndarray) -> np.ndarray:  # (B,S) → (B,2)
        shapes.append(ids.shape)
        return np.stack([(ids * mask).sum(1), mask.sum(1)], axis=1).astype(np.float32)

    def enc(n: int, tag: int) -> Encoded:
        return Encoded(ids=[tag] * n, span=(0, n), truncated=False)

    async def main() -> list[np.ndarray]:
        b = Batcher(run_batch, 2, max_batch_size=32, overhead_tokens=16)
        b.start()
        jobs = [b.submit([enc(40, 1)])] + [b.submit([enc(17, t), enc(16, t)]) for t in range(2, 6)]
        out = await asyncio.gather(*jobs)
        await b.close()
        return out

    out = asyncio.run(main())
    assert shapes == [(1, 40), (8, 17)]
    assert out[0].tolist() == [[40.0, 40.0]]
    for t, res in zip(range(2, 6), out[1:], strict=True):
        assert res.tolist() == [[17.0 * t, 17.0], [16.0 * t, 16.0]]


@pytest.mark.parametrize("linger_s", [0.0, 600.0])
def test_batcher_lingers_for_the_clients_it_answered(linger_s: float) -> None:
    """Four closed-loop clients (client i sends its next text 2 + 50i ms after its answer). Without lingering the
    first one back runs alone while the rest queue behind it (passes of 1 and 3 take turns); lingering waits
    until all four are back, so every pass holds all four. The linger here is 10 minutes: the run can only
    finish because lingering stops as soon as the answered clients are back (else `wait_for` fails). The think
    times are 50 ms apart, not 4: on a starved CPU (a niced run beside two trainings) the batcher woke more than
    14 ms late and found all four back even without lingering."""
    sizes: list[int] = []

    def run_batch(ids: np.ndarray, mask: np.ndarray, span: np.ndarray) -> np.ndarray:
        time.sleep(0.02)  # the forward pass (worker thread)
        sizes.append(ids.shape[0])
        return np.zeros((ids.shape[0], 2), dtype=np.float32)

    async def client(b: Batcher, rounds: int, think_s: float) -> None:
        for _ in range(rounds):
            await b.submit([Encoded(ids=[1] * 8, span=(0, 8), truncated=False)])
            await asyncio.sleep(think_s)

    async def main() -> None:
        b = Batcher(run_batch, 2, max_batch_size=32, overhead_tokens=16, linger_s=linger_s)
        b.start()
        await asyncio.wait_for(asyncio.gather(*(client(b, 6, 0.002 + 0.05 * i) for i in range(4))), 120)
        await b.close()

    asyncio.run(main())
    if linger_s:
        assert sizes == [4] * 6, sizes
    else:
        assert min(sizes) < 4 and len(sizes) > 6, sizes


def test_measure_call_overhead_fits_a_fixed_cost_per_pass() -> None:
    now = [0.0]  # a fake clock: each pass costs 20 ms + 0.5 ms per padded token (a/b = 40 tokens)

    def run_batch(ids: np.ndarray, mask: np.ndarray, span: np.ndarray) -> np.ndarray:
        now[0] += 0.02 + 0.0005 * ids.size + (0.01 if len(shapes) % 2 else 0.0)  # one run of each shape is slower
        shapes.append(ids.shape)
        return np.zeros((ids.shape[0], 2), dtype=np.float32)

    shapes: list[tuple[int, int]] = []
    probe = [(1, 8), (8, 32), (4, 16)]
    assert measure_call_overhead(run_batch, repeats=2, clock=lambda: now[0], shapes=probe) == pytest.approx(40)
    assert shapes == probe * 3  # one untimed round, then interleaved; the best of 2 per shape drops the slow runs
    assert len(PROBE_SHAPES) >= 4 and {r for r, _ in PROBE_SHAPES} >= {1, 16}


def test_fit_pass_cost_recovers_a_and_b_and_needs_two_sizes() -> None:
    times = {(r, s): 0.023 + 0.00144 * r * s for r in (1, 8, 16) for s in (16, 24)}
    a, b = fit_pass_cost(times)
    assert a == pytest.approx(0.023) and b == pytest.approx(0.00144)
    with pytest.raises(ValueError, match="two sizes"):
        fit_pass_cost({(2, 8): 0.1, (4, 4): 0.1})


def test_openai_float_and_base64_match_encode(url: str, rt: OnnxEncoder) -> None:
    texts = SENTENCES[:4]
    ref = rt.encode(texts)
    r = post(url, "/v1/embeddings", {"model": "tiny", "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "tiny" and len(body["data"]) == 4
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    tokens = sum(len(encode_one(rt.tokenizer, rt.template, t, rt.max_length).ids) for t in texts)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    r64 = post(url, "/v1/embeddings", {"model": "tiny", "input": texts, "encoding_format": "base64"}).json()
    got64 = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in r64["data"]])
    np.testing.assert_allclose(got64, ref, atol=1e-5)
    single = post(url, "/v1/embeddings", {"input": "A man is playing a guitar."}).json()
    np.testing.assert_allclose(single["data"][0]["embedding"], ref[0], atol=1e-5)


def test_openai_python_client(url: str, rt: OnnxEncoder) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    texts = SENTENCES[:3]
    res = client.embeddings.create(model="tiny", input=texts)  # the client asks for base64 and decodes it
    np.testing.assert_allclose(np.array([d.embedding for d in res.data]), rt.encode(texts), atol=1e-5)
    res = client.embeddings.create(model="tiny", input="Two dogs run across a snowy field.", encoding_format="float")
    np.testing.assert_allclose(res.data[0].embedding, rt.encode(texts[1]), atol=1e-5)
    assert res.usage.prompt_tokens > 0
    with pytest.raises(openai.APIStatusError) as e:
        client.embeddings.create(model="tiny", input=["x"] * 9)
    assert e.value.status_code == 413 and "limit is 8" in str(e.value)


def test_tei_embed(url: str, rt: OnnxEncoder) -> None:
    r = post(url, "/embed", {"inputs": "Two dogs run across a snowy field."})
    assert r.status_code == 200 and len(r.json()) == 1
    np.testing.assert_allclose(r.json()[0], rt.encode("Two dogs run across a snowy field."), atol=1e-5)
    r = post(url, "/embed", {"inputs": SENTENCES[:5], "normalize": True, "truncate": True})
    np.testing.assert_allclose(np.array(r.json()), rt.encode(SENTENCES[:5]), atol=1e-5)
    r = post(url, "/embed", {"inputs": "x", "normalize": False})
    assert r.status_code == 422 and r.json()["error"].startswith("normalize:")
    assert r.json()["error_type"] == "Validation"


def test_long_input_truncated_and_reported(url: str, rt: OnnxEncoder) -> None:
    long = SENTENCES[6]
    r = post(url, "/v1/embeddings", {"input": ["short", long]})
    assert r.status_code == 200 and r.json()["truncated"] == [1] and r.headers["x-bellm-truncated"] == "1"
    np.testing.assert_allclose(r.json()["data"][1]["embedding"], rt.encode(long), atol=1e-5)
    assert r.json()["usage"]["prompt_tokens"] == sum(len(encode_one(rt.tokenizer, rt.template, t, rt.max_length).ids)
                                                      for t in ("short", long))
    for path, body in (("/v1/embeddings", {"input": ["short", long], "truncate": False}),
                       ("/embed", {"inputs": ["short", long], "truncate": False})):
        r = post(url, path, body)
        assert r.status_code == 413, r.text
        assert "[1] is longer than max_length=24" in r.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/embeddings", {"input": 3}, "input"),
        ("/v1/embeddings", {"input": ["a", 3]}, "input"),
        ("/v1/embeddings", {"input": [[1, 2]]}, "input"),
        ("/v1/embeddings", {"input": []}, "input"),
        ("/v1/embeddings", {}, "input"),
        ("/v1/embeddings", {"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ("/v1/embeddings", {"input": "a", "dimensions": 16}, "dimensions"),
        ("/embed", {"inputs": "a", "normalize": "yes"}, "normalize"),
        ("/embed", {"inputs": "a", "truncation_direction": "left"}, "truncation_direction"),
        ("/embed", {"inputs": {"text": "a"}}, "inputs"),
    ],
)
def test_bad_requests_are_422_naming_the_field(url: str, path: str, body: dict, field: str) -> None:
    r = post(url, path, body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    message = err["message"] if path.startswith("/v1") else err
    assert message.startswith(f"{field}:"), message
    if path.startswith("/v1"):
        assert err["param"] == field


def test_bad_json_and_limits(url: str) -> None:
    r = httpx.post(url + "/v1/embeddings", content=b'{"input": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "body"
    r = post(url, "/embed", {"inputs": ["x"] * 9})
    assert r.status_code == 413 and "limit is 8" in r.json()["error"]
    r = post(url, "/v1/embeddings", {"input": ["ok", "y" * 2001]})
    assert r.status_code == 413 and "input[1] has 2001 characters" in r.json()["error"]["message"]


def test_health_info_metrics(url: str, rt: OnnxEncoder) -> None:
    assert httpx.get(url + "/health").json()["status"] == "ok"
    info = httpx.get(url + "/info").json()
    contract = json.loads((rt.path / "bellm.json").read_text())
    assert {k: info[k] for k in contract} == contract
    assert info["server"]["max_batch_size"] == 16 and info["server"]["model_id"] == "tiny"
    post(url, "/embed", {"inputs": ["metrics please"]})
    text = httpx.get(url + "/metrics").text
    for name in ("bellm_requests_total", "bellm_request_seconds_bucket", "bellm_batch_size_bucket",
                 "bellm_batch_seconds_bucket", "bellm_queue_depth", "bellm_inputs_total", "bellm_tokens_total"):
        assert name in text, name
    assert 'bellm_requests_total{code="200",endpoint="/embed"}' in text


class Gated:
    """The real exported model, whose forward passes wait for `gate` (to hold requests in the queue on cue)."""

    def __init__(self, path: Path) -> None:
        self.enc = OnnxEncoder(path, providers=["CPUExecutionProvider"])
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()  # open for the start-up warm-up
        run = self.enc.run_batch

        def gated_run(*args):  # noqa: ANN002, ANN202
            self.entered.set()
            assert self.gate.wait(60), "gate never opened"
            return run(*args)

        self.enc.run_batch = gated_run  # type: ignore[method-assign]

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()


def queue_depth(url: str) -> float:
    line = next(ln for ln in httpx.get(url + "/metrics").text.splitlines() if ln.startswith("bellm_queue_depth "))
    return float(line.split()[1])


def wait_for(cond, what: str, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def in_thread(results: dict, key: object, url: str, path: str, body: object) -> threading.Thread:
    t = threading.Thread(target=lambda: results.__setitem__(key, post(url, path, body)))
    t.start()
    return t


def test_queue_full_is_429_and_the_queued_requests_still_complete(export_dir: Path, rt: OnnxEncoder) -> None:
    g = Gated(export_dir / "fp32")
    cfg = ServeConfig(max_batch_size=64, max_wait_ms=0, max_queue=4, max_inputs=4)
    with running(create_app(g.enc, cfg, "tiny")) as u:
        g.hold()
        res: dict[str, httpx.Response] = {}
        ta = in_thread(res, "a", u, "/embed", {"inputs": ["a", "b", "c"]})
        assert g.entered.wait(20), "the first request never reached the model"  # running, out of the queue
        tb = in_thread(res, "b", u, "/embed", {"inputs": ["d", "e", "f"]})
        wait_for(lambda: queue_depth(u) == 3, "the second request never queued")
        r = post(u, "/v1/embeddings", {"input": ["g", "h"]})  # 3 queued + 2 > max_queue 4
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "overloaded"
        g.gate.set()
        ta.join(), tb.join()
        for key, texts in (("a", ["a", "b", "c"]), ("b", ["d", "e", "f"])):
            assert res[key].status_code == 200
            np.testing.assert_allclose(np.array(res[key].json()), rt.encode(texts), atol=1e-5)
        assert 'bellm_rejected_total{reason="queue_full"} 1.0' in httpx.get(u + "/metrics").text


def test_shutdown_drains_queued_requests(export_dir: Path, rt: OnnxEncoder) -> None:
    """Shutdown (uvicorn's SIGTERM path) while one batch runs and others wait: every request is answered."""
    g = Gated(export_dir / "fp32")
    app = create_app(g.enc, ServeConfig(max_batch_size=2, max_wait_ms=0), "tiny")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    u = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    wait_healthy(u)
    g.hold()
    res: dict[int, httpx.Response] = {}
    texts = [[f"request {i}", "shared words"] for i in range(5)]
    threads = [in_thread(res, 0, u, "/v1/embeddings", {"input": texts[0]})]
    assert g.entered.wait(20)
    threads += [in_thread(res, i, u, "/v1/embeddings", {"input": texts[i]}) for i in range(1, 5)]
    wait_for(lambda: queue_depth(u) == 8, "requests never queued")
    server.should_exit = True  # what uvicorn's SIGTERM handler does
    time.sleep(0.3)
    assert thread.is_alive()  # still draining
    g.gate.set()
    for t in threads:
        t.join(30)
    thread.join(30)
    assert not thread.is_alive() and not app.state.service.batcher.running
    for i in range(5):
        assert res[i].status_code == 200, res[i].text
        got = np.array([d["embedding"] for d in res[i].json()["data"]])
        np.testing.assert_allclose(got, rt.encode(texts[i]), atol=1e-5)


def test_load_16_clients_x_50_requests_nothing_lost_or_mixed(url: str, rt: OnnxEncoder) -> None:
    """Every answer equals encoding that request alone; batches really were shared."""
    rng = random.Random(0)
    pool = SENTENCES + [f"sentence number {i} about {w}" for i, w in enumerate(["cats", "rain", "trains"] * 8)]
    plans = [[rng.sample(pool, rng.randint(1, 4)) for _ in range(50)] for _ in range(16)]
    expected = {tuple(t): rt.encode(t) for plan in plans for t in plan}
    answers: list[tuple[list[str], np.ndarray]] = []

    async def client(plan: list[list[str]]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            for texts in plan:
                fmt = rng.choice(["float", "base64"])
                r = await c.post("/v1/embeddings", json={"input": texts, "encoding_format": fmt})
                assert r.status_code == 200, r.text
                data = r.json()["data"]
                assert [d["index"] for d in data] == list(range(len(texts)))
                vecs = [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") if fmt == "base64"
                        else np.asarray(d["embedding"], np.float32) for d in data]
                answers.append((texts, np.stack(vecs)))

    before = _batch_stats(url)

    async def main() -> None:
        await asyncio.gather(*(client(p) for p in plans))

    asyncio.run(main())
    assert len(answers) == 16 * 50
    for texts, got in answers:
        np.testing.assert_allclose(got, expected[tuple(texts)], atol=1e-5)
    n_batches, n_texts = (a - b for a, b in zip(_batch_stats(url), before, strict=True))
    assert n_texts == sum(len(t) for t, _ in answers)
    assert n_batches < n_texts, "no two texts ever shared a forward pass"


def _batch_stats(url: str) -> tuple[float, float]:
    lines = httpx.get(url + "/metrics").text.splitlines()
    val = {ln.split()[0]: float(ln.split()[1]) for ln in lines if ln.startswith("bellm_batch_size_")}
    return val["bellm_batch_size_count"], val["bellm_batch_size_sum"]


def test_resolve_run_id_and_champion(export_dir: Path, tmp_path: Path) -> None:
    from bellm.profiles import build_config
    from bellm.registry import new_run, promote

    run = new_run(tmp_path, "quick", build_config("quick").model_dump(mode="json"))  # the default setting
    (run.dir / "onnx").symlink_to(export_dir)
    d, name = resolve_target(run.id, artifacts=tmp_path)
    assert d == run.dir / "onnx" / "fp32" and name == f"{run.id}/fp32"
    assert resolve_target(run.id, "int8", artifacts=tmp_path)[0].name == "int8"
    with pytest.raises(ValueError, match="no champion"):
        resolve_target("champion", artifacts=tmp_path)
    promote(run.id, tmp_path, force=True, reason="a running run, served for this test")
    assert resolve_target("champion", artifacts=tmp_path)[0] == d
    with pytest.raises(ValueError, match="neither an export directory nor a run id"):
        resolve_target("nope", artifacts=tmp_path)
    assert resolve_target(str(export_dir))[1] == "tiny/fp32"


def test_serving_never_imports_torch(export_dir: Path) -> None:
    code = (
        "import threading, httpx, uvicorn, socket\n"
        "import bellm.cli as cli\n"
        "cli._register()\n"
        "from bellm.serve import build_app\n"
        f"app = build_app({str(export_dir / 'fp32')!r})\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]\n"
        "srv = uvicorn.Server(uvicorn.Config(app, log_level='warning'))\n"
        "t = threading.Thread(target=srv.run, kwargs={'sockets': [s]}); t.start()\n"
        "import time\n"
        "for _ in range(300):\n"
        "    try:\n"
        "        if httpx.get(f'http://127.0.0.1:{port}/health').status_code == 200: break\n"
        "    except httpx.HTTPError: time.sleep(0.1)\n"
        "r = httpx.post(f'http://127.0.0.1:{port}/v1/embeddings', json={'input': ['hi']})\n"
        "assert r.status_code == 200, r.text\n"
        "srv.should_exit = True; t.join()\n"
    )
    assert_runs_without(code, ("torch", "transformers", "sentence_transformers"), timeout=180)


def test_cli_serve_answers_and_stops_cleanly_on_sigterm(export_dir: Path, rt: OnnxEncoder) -> None:
    """A real `bellm serve` process (the variant chosen from an export root); SIGTERM shuts it down gracefully."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-c", "from bellm.cli import main; main()", "serve", str(export_dir), "--port", str(port),
           "--threads", "1", "--max-wait-ms", "1", "--no-spin"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        wait_healthy(url, timeout=120, proc=proc)
        r = post(url, "/v1/embeddings", {"input": ["A man is playing a guitar."]})
        assert r.status_code == 200 and r.json()["model"] == "tiny/fp32"
        np.testing.assert_allclose(r.json()["data"][0]["embedding"], rt.encode("A man is playing a guitar."),
                                   atol=1e-5)
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -SIGTERM (or 0)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in proc.communicate(timeout=10)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_spin_off_is_set_on_the_session_and_changes_no_embedding(export_dir: Path, rt: OnnxEncoder) -> None:
    """`bellm serve --no-spin` reaches onnxruntime's session options (idle CPU goes to the HTTP loop)."""
    key = "session.intra_op.allow_spinning"
    quiet = build_app(export_dir / "fp32", ServeConfig(threads=1, spin=False)).state.service.encoder
    busy = OnnxEncoder(export_dir / "fp32", spin=True)
    assert quiet.session.get_session_options().get_session_config_entry(key) == "0"
    assert busy.session.get_session_options().get_session_config_entry(key) == "1"
    np.testing.assert_array_equal(quiet.encode(SENTENCES), rt.encode(SENTENCES))


def test_cli_serve_bad_target_is_one_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-c", "from bellm.cli import main; main()", "serve", "no-such-run",
                          "--artifacts", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "error:" in res.stderr and "Traceback" not in res.stderr
