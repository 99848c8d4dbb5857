"""benchmarks/serve_load.py's bookkeeping: the clients' counts, the medians over rounds, the target checks."""
import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
spec = importlib.util.spec_from_file_location("serve_load", PATH)
serve_load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(serve_load)


async def _answer_predictions(reader, writer):
    """A stand-in /predict: one prediction per text of each request, on one keep-alive connection."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            texts = json.loads(await reader.readexactly(length))["texts"]
            body = json.dumps({"predictions": [{"label": "x"}] * len(texts)}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def _drive(per_request):
    async def main():
        server = await asyncio.start_server(_answer_predictions, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await serve_load.drive(port, [f"text {i}" for i in range(50)], clients=4, duration=0.3,
                                          per_request=per_request, client_kind="raw")
    return asyncio.run(main())


def test_drive_counts_requests_and_their_one_text_share():
    mixed = _drive((1, 3))
    assert mixed["failed"] == 0 and mixed["requests"] > 20
    assert 0 < mixed["one_text_requests"] < mixed["requests"]     # about a third are single-text
    assert mixed["texts_per_s"] > mixed["requests_per_s"]
    single = _drive((1, 1))
    assert single["one_text_requests"] == single["requests"]
    assert single["p99_ms_one_text"] == single["p99_ms"]
    assert single["p50_ms"] <= single["p99_ms"] <= single["max_ms"]


def _run(workload, batching, texts_per_s, p99, p99_one, one_text, round_=0):
    return {"workers": 2, "workload": workload, "batching": batching, "round": round_, "requests": 100,
            "failed": 0, "failures_sample": [], "texts_per_s": texts_per_s, "requests_per_s": texts_per_s,
            "p99_ms": p99, "p99_ms_one_text": p99_one, "one_text_requests": one_text,
            "server_alive": True}


def test_medians_take_the_middle_round_and_sum_the_counts():
    rows = serve_load.medians([_run("mixed", True, v, 50.0 + v, 40.0 + v, 7, r)
                               for r, v in enumerate((3.0, 1.0, 2.0))])
    assert len(rows) == 1
    row = rows[0]
    assert row["texts_per_s"] == 2.0 and row["p99_ms_one_text"] == 42.0
    assert row["requests"] == 300 and row["one_text_requests"] == 21 and row["rounds"] == 3


def test_targets_include_the_single_text_requests_of_the_mixed_workload():
    runs = [_run("single", True, 3300.0, 40.0, 40.0, 100), _run("single", False, 1000.0, 120.0, 120.0, 100),
            _run("mixed", True, 6000.0, 800.0, 55.0, 130), _run("mixed", False, 5000.0, 400.0, 390.0, 120)]
    checks = serve_load.check_targets(runs)["checks"]
    assert checks["p99_single_text_ms"]["met"] and checks["p99_single_text_ms"]["measured"] == 40.0
    in_mixed = checks["p99_single_text_in_mixed_ms"]
    assert in_mixed["measured"] == 55.0 and in_mixed["samples"] == 130 and not in_mixed["met"]
    assert checks["batching_speedup_single"]["measured"] == pytest.approx(3.3)
    assert checks["batching_speedup_mixed"]["measured"] == pytest.approx(1.2)
    assert checks["batching_speedup_mixed_per_text"]["measured"] == pytest.approx(6.0)
    assert checks["zero_failed_requests"]["met"]
