# gunicorn settings for Banner Bandit. PORT and WEB_CONCURRENCY come from the environment.
import os
import shutil
import tempfile

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
# One sync worker per core (at least 2): a serve never waits on I/O (decisions from memory, writes
# asynchronous), so more workers than cores only add context switches (benchmarks: 2 workers on 2 cores
# served 626 req/s, 4 workers 392).
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, os.cpu_count() or 2))
worker_class = "sync"
# No preload: each worker builds its app, and so its own Cassandra session, after the fork.
preload_app = False
timeout = 30
graceful_timeout = 15
keepalive = 5
# Longest request line gunicorn reads (its maximum; default 4094). The documented query parameters at their
# longest, percent-encoded as UTF-8, need about 6 KB: beyond the limit gunicorn answers 414 itself.
limit_request_line = 8190
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = "info"
# The worker's heartbeat file gets a utime() on every turn of a sync worker's loop, before each request. On a
# disk-backed filesystem that call can wait for the journal while it commits, and Cassandra's flushes and fsyncs
# on the same disk can make those commits slow (gunicorn's own docs warn of it). A RAM filesystem has no journal.
_ram_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or _ram_dir
# gunicorn's control socket has one default path per user: several servers on one machine (tests,
# benchmarks, `make run`) would fight over it, and we do not use it.
control_socket_disable = True


def worker_exit(server, worker):
    """Flush aggregated counters and wait for in-flight impression writes before the worker goes."""
    from webapp.serving import runtime as runtime_module

    app = getattr(worker, "wsgi", None)
    runtime = app.extensions.get("runtime") if app is not None else None
    if isinstance(runtime, runtime_module.Runtime):
        runtime.shutdown()


# Prometheus multiprocess mode: every worker writes its samples here; /metrics sums them.
# A fresh directory per server start (stale files of an earlier run would be summed too), in RAM when there is
# one: the samples are memory-mapped files written on every request, and need no disk (see worker_tmp_dir).
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def on_starting(server):
    """Made when the master starts, before any worker: not when this file is only read (--print-config)."""
    if _own_metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="banner-bandit-metrics-", dir=_ram_dir)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
