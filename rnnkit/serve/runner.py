"""Run the app with uvicorn: `run(checkpoint, settings, host, port, workers)` (what `rnnkit serve` calls).

One worker runs the app in this process. With `workers > 1` uvicorn starts that many processes, each
building its own app from environment variables (`app_from_env`, uvicorn's factory mode), each with its
own model and batcher; the OS spreads connections over them.
"""
from __future__ import annotations

import logging
import os

from .settings import ServeSettings

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(n: int) -> None:
    """Use at most `n` BLAS (and torch) threads in this process and in the workers it starts.

    The environment variables reach worker processes; in this process NumPy is already loaded (the CLI
    imports it), so its BLAS pool is resized through threadpoolctl when installed. One thread is the right
    default: the model runs on one worker thread anyway, and idle OpenBLAS threads spin, taking the CPU
    that the event loop needs to parse and answer requests.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        logging.getLogger("rnnkit.serve").warning(
            "threadpoolctl is not installed: BLAS threads are limited only in worker processes")
    else:
        threadpool_limits(limits=n)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def allow_open_files(n: int) -> None:
    """Let this process (and the workers it starts) hold `n` open files: raise the soft RLIMIT_NOFILE
    towards the hard one if it is lower (a common soft limit is 1024), else warn that connections beyond
    it will fail to be accepted."""
    try:
        import resource
    except ImportError:         # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= n:
        return
    target = n if hard == resource.RLIM_INFINITY else min(n, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < n:
        logging.getLogger("rnnkit.serve").warning(
            "the open-file limit (ulimit -n %d) is below --max-connections plus the files a worker holds (%d): "
            "connections beyond it will fail", target, n)


def app_from_env():
    """The app described by `RNNKIT_SERVE_*` variables (uvicorn's factory for worker processes)."""
    from rnnkit.runtime import tune_process

    # A worker process: its malloc thresholds are its own (the OpenBLAS variables came with the parent's
    # environment, set before NumPy loaded, when NumPy may already be loaded here).
    tune_process()
    from .app import create_app

    checkpoint, settings = ServeSettings.from_env()
    threads = int(os.environ.get("RNNKIT_SERVE_THREADS", "1"))
    limit_threads(threads)
    app = create_app(checkpoint, settings=settings)
    limit_threads(threads)
    return app


def run(checkpoint, settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        threads: int = 1, log_level: str = "info", access_log: bool = True) -> None:
    """Serve until interrupted. The model is loaded before the port opens, so a bad checkpoint fails here.

    Connections go through connection.py's guarded protocol (settings' timeouts and caps); the app has no
    WebSocket endpoint, so upgrades are not offered.
    """
    import uvicorn

    from .connection import ConnectionLimits, protocol_factory

    limit_threads(threads)
    allow_open_files(settings.max_connections + 128)     # the connections, the model's and Python's own files
    options = dict(host=host, port=port, log_level=log_level, access_log=access_log,
                   limit_concurrency=settings.limit_concurrency, timeout_keep_alive=settings.idle_timeout,
                   http=protocol_factory(ConnectionLimits.of(settings)), ws="none")
    if workers > 1:
        from .app import Served

        Served(checkpoint, settings)        # fail now, in one process, if the checkpoint cannot be served
        os.environ.update(settings.to_env(checkpoint), RNNKIT_SERVE_THREADS=str(threads))
        uvicorn.run("rnnkit.serve.runner:app_from_env", factory=True, workers=workers, **options)
    else:
        from .app import create_app

        app = create_app(checkpoint, settings=settings)
        limit_threads(threads)      # again: the torch engine imports torch only now
        uvicorn.run(app, **options)
