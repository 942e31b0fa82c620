# gunicorn settings for Banner Bandit. Its variables (BIND_HOST, PORT, WEB_CONCURRENCY, …) are settings of
# webapp.web.config like the app's: read and validated here, at the master's start (docs/configuration.md).
import os
import shutil
import tempfile

from webapp.web.config import read as _read_settings

_settings = _read_settings()

_host = f"[{_settings.BIND_HOST}]" if ":" in _settings.BIND_HOST else _settings.BIND_HOST    # IPv6
bind = f"{_host}:{_settings.PORT}"
# One sync worker per core (at least 2): a serve never waits on I/O (decisions from memory, writes
# asynchronous), so more workers than cores only add context switches (benchmarks: 2 workers on 2 cores
# served more than 4 workers did, in make bench-serve).
workers = _settings.WEB_CONCURRENCY or max(2, os.cpu_count() or 2)
worker_class = "sync"
# No preload: each worker builds its app, and so its own Cassandra session, after the fork.
preload_app = False
timeout = 30
graceful_timeout = 15
keepalive = 5
# Longest request line gunicorn reads (its maximum; default 4094). The documented query parameters at their
# longest, percent-encoded as UTF-8, need about 6 KB: beyond the limit gunicorn answers 414 itself.
limit_request_line = 8190
# Forwarded headers (X-Forwarded-Proto, -For, …) are honoured only by the app's ProxyFix, for TRUSTED_PROXIES
# hops (webapp/web/security.py). gunicorn's own default trusts them from 127.0.0.1 (and its FORWARDED_ALLOW_IPS
# variable): a local client could then make click URLs https. It trusts no peer here.
forwarded_allow_ips = ""
accesslog = _settings.GUNICORN_ACCESS_LOG or None
errorlog = "-"
loglevel = "info"
# The worker's heartbeat file gets a utime() on every turn of a sync worker's loop, before each request. On a
# disk-backed filesystem that call can wait for the journal while it commits, and Cassandra's flushes and fsyncs
# on the same disk can make those commits slow (gunicorn's own docs warn of it). A RAM filesystem has no journal.
_ram_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
worker_tmp_dir = _settings.GUNICORN_WORKER_TMP_DIR or _ram_dir
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
_own_metrics_dir = None        # made by on_starting unless PROMETHEUS_MULTIPROC_DIR is set; removed by on_exit


def on_starting(server):
    """Made when the master starts, before any worker: not when this file is only read (--print-config).
    Passed to the workers in their environment, where their app's settings (and prometheus_client) read it."""
    global _own_metrics_dir
    if not _settings.PROMETHEUS_MULTIPROC_DIR:
        _own_metrics_dir = tempfile.mkdtemp(prefix="banner-bandit-metrics-", dir=_ram_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
