"""A durable local spool of events: per process, append-only, fsynced in batches, bounded, replayable.

Every impression is appended here before its serve is answered (one ``write(2)``: it survives the
process being killed, and the background fsync every SPOOL_FSYNC_SECONDS bounds what a machine crash
could take). A record stays *pending* until Cassandra has it; a segment file is deleted once it is
closed (rotated every SPOOL_SEGMENT_SECONDS) and holds no pending record.

Ownership is an exclusive ``flock`` held by the writing process for as long as the segment exists, so a
segment whose lock can be taken belongs to a process that died: any process may claim it (taking the
lock) and replay it. Replay is idempotent: impressions and clicks are written with ``IF NOT EXISTS`` on
their deterministic keys and counted only when applied, so a crash during replay and a second replay
count nothing twice.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class SpoolFull(Exception):
    """The spool reached SPOOL_MAX_BYTES: events cannot be made durable until Cassandra is back."""


@dataclass(eq=False)      # a segment is its identity (hashable, compared by `is`)
class Segment:
    path: Path
    fd: int
    opened_at: float
    size: int = 0
    records: int = 0
    pending: int = 0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int, segment_seconds: float) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_seconds = segment_seconds
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._sequence = 0
        self._segments: list[Segment] = []       # open (locked) segments of this process, oldest first
        self._current: Segment | None = None
        self._dirty = False
        self.full_since: float | None = None     # monotonic time the spool became full (the alarm)

    # -- writing ------------------------------------------------------------------------------------------

    def _open_segment(self) -> Segment:
        """A new segment, locked before it has its name: a replay scan (this process's background thread, or
        another process's) that finds a seg-*.jsonl file unlocked takes it for an orphan. Created under a
        staging name, locked, then renamed (the lock belongs to the open file, not to the name)."""
        self._sequence += 1
        path = self.directory / f"seg-{self.owner}-{self._sequence:06d}.jsonl"
        staging = path.with_name(f".{path.name}.new")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(staging, path)
        except BaseException:
            os.close(fd)
            staging.unlink(missing_ok=True)
            raise
        segment = Segment(path, fd, time.monotonic())
        self._segments.append(segment)
        return segment

    @property
    def size(self) -> int:
        return sum(s.size for s in self._segments)

    def append(self, record: dict[str, Any]) -> Segment:
        """Append one record (a write(2), not yet fsynced) and count it pending; raises SpoolFull."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self.size + len(line) > self.max_bytes:
                if self.full_since is None:
                    self.full_since = time.monotonic()
                    log.error("ALARM: event spool %s is full (%d bytes): new events are refused until "
                              "Cassandra takes the pending ones", self.directory, self.max_bytes)
                raise SpoolFull(f"event spool full ({self.max_bytes} bytes)")
            self.full_since = None
            segment = self._current
            if segment is None:
                segment = self._current = self._open_segment()
            os.write(segment.fd, line)
            segment.size += len(line)
            segment.records += 1
            segment.pending += 1
            self._dirty = True
            return segment

    def done(self, *segments: Segment) -> None:
        """One record of each of ``segments`` (a segment once per record) is in Cassandra."""
        with self._lock:
            for segment in segments:
                segment.pending -= 1
            for segment in set(segments):
                self._retire_if_done(segment)

    def _retire_if_done(self, segment: Segment) -> None:
        if segment.closed and segment.pending <= 0 and segment in self._segments:
            self._segments.remove(segment)
            os.unlink(segment.path)
            os.close(segment.fd)          # releases the lock after the file is gone

    def sync(self) -> None:
        """fsync the current segment (group commit) and rotate it when it is old enough.

        The fsync runs outside the lock, on a duplicate of the descriptor: it can take tens to hundreds of
        milliseconds, and append() (every serve) must not wait for it. Whatever was appended before the
        dirty flag is cleared is covered; what comes after sets it again for the next sync.
        """
        with self._lock:
            segment = self._current
            if segment is None:
                return
            fd = os.dup(segment.fd) if self._dirty else None
            self._dirty = False
            rotate = time.monotonic() - segment.opened_at >= self.segment_seconds
            if rotate:
                segment.closed = True
                self._current = None
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if rotate:
            with self._lock:
                self._retire_if_done(segment)

    def close(self) -> None:
        """At process exit: fsync; segments still pending stay on disk (unlocked) for replay."""
        with self._lock:
            for segment in list(self._segments):
                os.fsync(segment.fd)
                segment.closed = True
                if segment.pending <= 0:
                    self._retire_if_done(segment)
                else:
                    os.close(segment.fd)
                    self._segments.remove(segment)
            self._current = None

    # -- replay of segments whose writer died ------------------------------------------------------------

    def orphans(self) -> Iterator[tuple[Path, list[dict[str, Any]], int]]:
        """Yield (path, records, fd) for each segment no live process holds; the caller owns the lock.

        The caller must call :meth:`finish_replay` (replayed) or :meth:`abandon_replay` (try later).
        """
        self._remove_stale_staging()
        mine = {s.path for s in self._segments}
        for path in sorted(self.directory.glob("seg-*.jsonl")):
            if path in mine:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)              # a live process holds it
                continue
            if not path.exists():         # retired between glob and lock
                os.close(fd)
                continue
            yield path, list(_read_records(path)), fd

    def _remove_stale_staging(self, older_than_seconds: float = 60.0) -> None:
        """Staging files of processes that died between creating a segment and naming it: empty (records
        are appended after the rename). Only old ones, so as never to race a writer about to lock its own."""
        for staging in self.directory.glob(".seg-*.jsonl.new"):
            try:
                if time.time() - staging.stat().st_mtime > older_than_seconds:
                    staging.unlink()
            except FileNotFoundError:
                continue

    @staticmethod
    def finish_replay(path: Path, fd: int) -> None:
        os.unlink(path)
        os.close(fd)

    @staticmethod
    def abandon_replay(fd: int) -> None:
        os.close(fd)


def _read_records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                log.warning("%s:%d: torn last record skipped (never acknowledged)", path, number)
                continue
            try:
                yield json.loads(line)
            except ValueError:
                log.error("%s:%d: unreadable record skipped", path, number)
