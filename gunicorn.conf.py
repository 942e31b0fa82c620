# gunicorn settings for Banner Bandit. PORT and WEB_CONCURRENCY come from the environment.
import os

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
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
# gunicorn's control socket has one default path per user: several servers on one machine (tests,
# benchmarks, `make run`) would fight over it, and we do not use it.
control_socket_disable = True


def worker_exit(server, worker):
    """Flush aggregated counters and wait for in-flight impression writes before the worker goes."""
    from webapp import runtime as runtime_module

    app = getattr(worker, "wsgi", None)
    runtime = app.extensions.get("runtime") if app is not None else None
    if isinstance(runtime, runtime_module.Runtime):
        runtime.shutdown()
