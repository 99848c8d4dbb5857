"""The server under slow and hostile clients (issue 20, item 4), against a real `rnnkit serve` on loopback.

One server with short timeouts (idle 2 s, header and body 1 s) and a cap of 40 connections serves the live
tests; each test closes its sockets. Everything is bounded: at most 41 sockets, a give-up time on every read.
"""
from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httptools")
httpx = pytest.importorskip("httpx")

from serving import live_server, train_tiny_checkpoints  # noqa: E402

from rnnkit.cli import main as cli_main  # noqa: E402
from rnnkit.serve.connection import ConnectionLimits, error_response  # noqa: E402
from rnnkit.serve.settings import ServeSettings  # noqa: E402

IDLE = 2.0                      # the idle timeout of the server below
TIMEOUT = 1.0                   # its header and body timeouts
MAX_CONNECTIONS = 40
HEAD = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return train_tiny_checkpoints(tmp_path_factory.mktemp("limits"), tasks=("classify",))


@pytest.fixture(scope="module")
def server(checkpoints):
    with live_server(checkpoints["classify"], "--idle-timeout", str(IDLE), "--header-timeout", str(TIMEOUT),
                     "--body-timeout", str(TIMEOUT), "--max-connections", str(MAX_CONNECTIONS)) as live:
        yield live


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s: socket.socket, give_up: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and when it closed (seconds from now)."""
    start, got = time.monotonic(), b""
    while time.monotonic() - start < give_up:
        s.settimeout(max(0.01, give_up - (time.monotonic() - start)))
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            break
        except ConnectionError:
            return got, time.monotonic() - start
        if not chunk:
            return got, time.monotonic() - start
        got += chunk
    return got, float("inf")


def drip(port: int, every: float = 1.0, give_up: float = 8.0) -> tuple[bytes, float]:
    """A client sending a request head that never ends, one byte every `every` seconds: (what it read, when
    the server closed the connection)."""
    s = connect(port)
    start, got = time.monotonic(), b""
    try:
        for i in range(10_000):
            try:
                s.send(HEAD[i:i + 1] or b"a")
            except OSError:                                 # reset: the server closed the connection
                return got, time.monotonic() - start
            s.settimeout(every)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                chunk = None
            except ConnectionError:
                return got, time.monotonic() - start
            if chunk == b"":
                return got, time.monotonic() - start
            got += chunk or b""
            if time.monotonic() - start > give_up:
                return got, float("inf")
    finally:
        s.close()


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


# ------------------------------------------------------------------------------------------------ live server

def test_connections_that_send_nothing_are_closed_after_the_idle_timeout(server):
    sockets = [connect(server.port) for _ in range(20)]
    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda s: read_until_closed(s, give_up=3 * IDLE), sockets))
    finally:
        for s in sockets:
            s.close()
    for got, closed_after in results:
        assert got == b"" and 0.5 * IDLE <= closed_after <= 2 * IDLE, (got, closed_after)


def test_dripping_clients_are_cut_off_and_well_behaved_clients_keep_their_latency(server):
    """20 clients drip a request head at a byte a second: each gets 408 and is closed after the header
    timeout; meanwhile a well-behaved client's requests are answered as fast as without them."""
    url, body = f"{server.base}/predict", {"texts": ["thanks for the upgrade"]}

    def latencies(client, n=15):
        out = []
        for _ in range(n):
            start = time.perf_counter()
            assert client.post(url, json=body, timeout=5).status_code == 200
            out.append(time.perf_counter() - start)
        return out

    with httpx.Client() as client:
        latencies(client, 3)                                    # warm
        quiet = latencies(client)
        with ThreadPoolExecutor(20) as pool:
            drips = [pool.submit(drip, server.port) for _ in range(20)]
            time.sleep(0.3)                                     # they are connected and dripping
            busy = latencies(client)
            results = [d.result() for d in drips]
    for got, closed_after in results:
        assert status(got) == 408 and b"did not arrive within 1 s" in got, got
        assert TIMEOUT - 0.1 <= closed_after <= TIMEOUT + 2.5, closed_after
    # A busy shared machine makes single timings noisy: the medians, with a wide margin (both are ms).
    assert statistics.median(busy) < 5 * statistics.median(quiet) + 0.05, (quiet, busy)


def test_a_keep_alive_connection_is_timed_per_request_not_in_total(server):
    """Five requests on one connection, each head sent in two parts 0.4 s apart: every head arrives well
    within the header timeout though together they take longer than it, so none is cut off."""
    s = connect(server.port)
    start = time.monotonic()
    try:
        for _ in range(5):
            s.sendall(b"GET /health HTTP/1.1\r\n")
            time.sleep(0.4)
            s.sendall(b"Host: 127.0.0.1\r\n\r\n")
            s.settimeout(5)
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                chunk = s.recv(65536)
                assert chunk, f"closed after {time.monotonic() - start:.1f} s: {answer}"
                answer += chunk
            assert status(answer) == 200
    finally:
        s.close()
    assert time.monotonic() - start > 1.9 * TIMEOUT


def test_a_request_body_that_does_not_arrive_in_time_gets_408(server):
    s = connect(server.port)
    try:
        s.sendall(HEAD + b"x\r\nContent-Length: 100\r\n\r\n{\"texts\": [")
        got, closed_after = read_until_closed(s, give_up=TIMEOUT + 4)
    finally:
        s.close()
    assert status(got) == 408 and b"body did not arrive" in got, got
    assert TIMEOUT - 0.1 <= closed_after <= TIMEOUT + 2.5


def test_a_1mb_header_gets_431(server):
    s = connect(server.port)
    try:
        s.sendall(HEAD + b"a" * 1_000_000)                    # the head never ends
        got, _ = read_until_closed(s, give_up=5)
    finally:
        s.close()
    assert status(got) == 431 and b"16384" in got, got[:200]
    assert got.endswith(b'"}') and b"connection: close" in got
    assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200


def test_huge_unfinished_headers_do_not_grow_the_servers_memory(server):
    """8 clients send 4 MB of request head each (32 MB, no end of headers): without a cap the server would
    hold all of it; with it, each is answered 431 after 16 KB."""
    def send(_):
        s = connect(server.port)
        try:
            s.sendall(HEAD + b"a" * 4_000_000)
        except OSError:
            pass
        return s

    before = server.rss_bytes()
    with ThreadPoolExecutor(8) as pool:
        sockets = list(pool.map(send, range(8)))
    try:
        grown = server.rss_bytes() - before
        answers = [read_until_closed(s, give_up=5)[0] for s in sockets]
    finally:
        for s in sockets:
            s.close()
    assert grown < 8_000_000, f"the server's memory grew by {grown / 1e6:.1f} MB"
    assert all(status(a) in (431, 0) for a in answers) and any(status(a) == 431 for a in answers), answers


def test_connections_beyond_the_cap_get_503_and_the_others_are_served(server):
    time.sleep(0.3)                                             # earlier tests' connections are gone
    held = [connect(server.port) for _ in range(MAX_CONNECTIONS)]
    try:
        extra = connect(server.port)
        got, closed_after = read_until_closed(extra, give_up=IDLE)
        extra.close()
        assert status(got) == 503 and b"limit of 40 open connections" in got, got
        assert closed_after < IDLE
        held[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")   # one that was let in
        answer, _ = read_until_closed(held[0], give_up=5)
        assert status(answer) == 200 and answer.endswith(b'{"status":"ok"}'), answer
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200     # slots are free again


# ------------------------------------------------------------------------------------------------ settings

def test_connection_settings_are_options_of_serve_and_travel_to_workers():
    s = ServeSettings(idle_timeout=1.5, header_timeout=3, body_timeout=4.5, max_header_bytes=8192,
                      max_connections=7, limit_concurrency=5)
    assert ServeSettings.from_env(s.to_env("ckpt")) == ("ckpt", s)
    assert ServeSettings.from_env(ServeSettings().to_env("ckpt"))[1].limit_concurrency is None
    assert ConnectionLimits.of(s) == ConnectionLimits(1.5, 3, 4.5, 8192, 7)
    d = ServeSettings()
    assert (d.idle_timeout, d.header_timeout, d.body_timeout, d.max_header_bytes, d.max_connections) == \
        (5.0, 10.0, 30.0, 16384, 512)
    help_text = subprocess.run([sys.executable, "-m", "rnnkit.cli", "serve", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    for option in ("--idle-timeout", "--header-timeout", "--body-timeout", "--max-header-bytes",
                   "--max-connections", "--limit-concurrency", "--no-batching", "--no-fast-path"):
        assert option in help_text, option
    assert "(default: 16384)" in help_text and "connection settings:" in help_text


@pytest.mark.parametrize("soft, hard, expected", [(256, 20000, 640), (256, 300, 300), (1000, 2000, 1000)])
def test_the_open_file_limit_is_raised_for_the_connections(soft, hard, expected):
    """max_connections 512 (+128 files of the process's own) needs 640 open files: the soft limit is raised
    towards the hard one, with a warning where the hard one is lower."""
    code = ("import resource; from rnnkit.serve.runner import allow_open_files; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); allow_open_files(640); "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and int(r.stdout) == expected, r.stderr
    assert ("connections beyond it will fail" in r.stderr) == (expected < 640)


@pytest.mark.parametrize("args, words", [
    (["--header-timeout", "0"], "header_timeout must be a number of seconds above 0"),
    (["--idle-timeout", "-1"], "idle_timeout must be"),
    (["--max-header-bytes", "100"], "max_header_bytes must be an integer from 1024"),
    (["--max-connections", "0"], "max_connections must be a positive integer"),
    (["--limit-concurrency", "0"], "limit_concurrency must be a positive integer"),
])
def test_bad_connection_settings_are_one_line_errors(args, words, capsys):
    assert cli_main(["serve", "no/such/checkpoint", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1, err


def test_error_response_is_a_whole_json_response():
    raw = error_response(431, "too big", [(b"server", b"uvicorn")])
    head, body = raw.split(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"server: uvicorn" in head and b"connection: close" in head
    assert body == b'{"detail":"too big"}' and f"content-length: {len(body)}".encode() in head
