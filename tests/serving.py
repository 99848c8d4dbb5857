"""Helpers for the server tests: tiny checkpoints, and `rnnkit serve` as a real process on loopback."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass


def train_tiny_checkpoints(tmp, tasks=("classify", "lm")) -> dict[str, str]:
    """A tiny classifier and a tiny character language model (those of `tasks`) under `tmp`, each trained in
    well under a second."""
    from rnnkit.tasks import classify, lm

    out = {}
    if "classify" in tasks:
        good = ["great flight thanks", "love the crew", "awesome service :)", "thank you so much", "best airline"]
        bad = ["lost my bag again", "delayed three hours", "worst service ever", "cancelled flight", "rude staff"]
        rows = ([f"\"{good[i % 5]} {i}\",positive" for i in range(40)]
                + [f"\"{bad[i % 5]} {i}\",negative" for i in range(40)])
        (tmp / "data.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
        out["classify"] = str(classify.train_classifier(
            data=str(tmp / "data.csv"), hidden=8, embedding=8, epochs=1, min_freq=1, progress=False,
            out=str(tmp / "clf"), log=lambda *a: None).best)
    if "lm" in tasks:
        (tmp / "text.txt").write_text("to be or not to be, that is the question.\n" * 30)
        out["lm"] = str(lm.train_lm(data=str(tmp / "text.txt"), hidden=8, layers=1, epochs=1, progress=False,
                                    out=str(tmp / "lm")).best)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Live:
    """A running server: its base URL, port and process."""

    base: str
    port: int
    process: subprocess.Popen

    def rss_bytes(self) -> int:
        """The server process's resident memory (Linux: /proc/PID/status)."""
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise OSError("no VmRSS line")


@contextlib.contextmanager
def live_server(checkpoint, *args, env=None, key=None, timeout=60.0):
    """`rnnkit serve CHECKPOINT ARGS...` as a real process on 127.0.0.1; yields a Live; always stopped. `key`:
    the API key to wait on /ready with (the server's own comes through `env`)."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "rnnkit.cli", "serve", checkpoint, "--port", str(port), "--no-access-log",
           "--log-level", "warning", *args]
    environ = {k: v for k, v in os.environ.items() if k != "RNNKIT_API_KEY"}
    proc = subprocess.Popen(cmd, env={**environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode}): {proc.stdout.read()}")
            try:
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                if httpx.get(f"{base}/ready", headers=headers, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not get ready in time")
            time.sleep(0.05)
        yield Live(base, port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
