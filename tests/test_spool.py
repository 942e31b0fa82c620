"""The durable event spool, on the file system (no Cassandra)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from webapp.storage.spool import Spool, SpoolFull


def test_segment_is_deleted_once_closed_and_written(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_seconds=0)
    a = spool.append({"n": 1})
    b = spool.append({"n": 2})
    assert a is b
    [path] = tmp_path.glob("seg-*.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"n": 1}, {"n": 2}]
    spool.sync()                      # rotates: the segment is closed but still has 2 pending records
    assert path.exists()
    spool.done(a)
    assert path.exists()
    spool.done(b)
    assert not path.exists()
    assert spool.append({"n": 3}).path != path     # a new segment


def test_full_spool_refuses_and_raises_the_alarm(tmp_path):
    spool = Spool(tmp_path, max_bytes=60, segment_seconds=60)
    spool.append({"x": "a" * 20})
    with pytest.raises(SpoolFull):
        spool.append({"x": "b" * 40})
    assert spool.full_since is not None
    assert spool.size < 60


def _write_and_die(directory: str, ready) -> None:
    spool = Spool(directory, max_bytes=1 << 20, segment_seconds=60)
    spool.append({"kind": "impression", "n": 1})
    spool.append({"kind": "impression", "n": 2})
    ready.set()
    time.sleep(60)                    # killed by the test while holding its segment


def test_only_segments_of_dead_processes_are_orphans(tmp_path):
    ready = multiprocessing.get_context("fork").Event()
    child = multiprocessing.get_context("fork").Process(target=_write_and_die, args=(str(tmp_path), ready))
    child.start()
    assert ready.wait(10)
    mine = Spool(tmp_path, max_bytes=1 << 20, segment_seconds=60)
    mine.append({"kind": "impression", "n": 99})
    assert list(mine.orphans()) == []             # the child is alive and holds its lock; ours is ours
    child.kill()
    child.join()
    [(path, records, fd)] = list(mine.orphans())
    assert records == [{"kind": "impression", "n": 1}, {"kind": "impression", "n": 2}]
    assert list(mine.orphans()) == []             # claimed: nobody else replays it meanwhile
    Spool.abandon_replay(fd)                      # e.g. Cassandra still down
    [(path2, _, fd2)] = list(mine.orphans())
    assert path2 == path
    Spool.finish_replay(path2, fd2)
    assert not path.exists()


def test_torn_last_record_is_skipped(tmp_path):
    path = tmp_path / "seg-deadhost-1-abc-000001.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":')
    [(_, records, fd)] = list(Spool(tmp_path, 1 << 20, 60).orphans())
    os.close(fd)
    assert records == [{"n": 1}, {"n": 2}]


def test_close_leaves_pending_segments_for_replay(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_seconds=60)
    spool.append({"n": 1})
    spool.append({"n": 2})
    spool.close()
    [path] = tmp_path.glob("seg-*.jsonl")
    other = Spool(tmp_path, max_bytes=1 << 20, segment_seconds=60)
    [(found, records, fd)] = list(other.orphans())
    assert found == path and len(records) == 2
    os.close(fd)


@pytest.mark.slow    # thousands of fsynced segments: seconds of disk I/O
def test_a_replay_scan_never_takes_a_segment_that_is_being_opened(tmp_path):
    """Regression (a 500 in `make bench-serve`): the writer created a segment file and locked it in two steps,
    and a replay scan in between — this process's background thread, or another worker's — locked the new,
    empty file as an orphan, deleted it, and the writer's flock failed. Another spool on the same directory
    scans in a thread while this one opens thousands of segments: none may be taken, no append may fail."""
    import threading

    spool = Spool(tmp_path, max_bytes=1 << 30, segment_seconds=0)
    stop = threading.Event()
    scanner = Spool(tmp_path, max_bytes=1 << 20, segment_seconds=60)
    taken = []

    def scan() -> None:
        while not stop.is_set():
            for path, _records, fd in scanner.orphans():
                taken.append(path.name)
                scanner.abandon_replay(fd)

    thread = threading.Thread(target=scan)
    thread.start()
    try:
        for n in range(3000):
            segment = spool.append({"n": n})     # a new segment each time (rotated by the sync below)
            spool.sync()
            spool.done(segment)
    finally:
        stop.set()
        thread.join()
    assert taken == []
    assert list(tmp_path.glob("seg-*.jsonl")) == []


def test_stale_staging_files_of_dead_writers_are_removed(tmp_path):
    stale = tmp_path / ".seg-gone-000001.jsonl.new"
    fresh = tmp_path / ".seg-busy-000001.jsonl.new"
    stale.touch()
    fresh.touch()
    os.utime(stale, (time.time() - 120, time.time() - 120))
    assert list(Spool(tmp_path, max_bytes=1 << 20, segment_seconds=60).orphans()) == []
    assert not stale.exists() and fresh.exists()
