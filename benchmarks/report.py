"""Each benchmark's section of docs/BENCHMARKS.md, rewritten by the benchmark that measures it.

A section is the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``. ``write_section`` replaces
that text and leaves the rest of the file as it was (the headings, the aims and what the figures mean are
written by hand outside the markers); a section that is not there yet is appended at the end. The benchmark
scripts import it as ``from report import write_section`` (this folder is on their path).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"


def markers(name: str) -> tuple[str, str]:
    """The opening and closing marker of section ``name`` (letters, digits and ``-``)."""
    if not re.fullmatch(r"[a-z0-9-]+", name):
        raise ValueError(f"section name {name!r}: use lower-case letters, digits and '-'")
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def replace_section(text: str, name: str, markdown: str) -> str:
    """``text`` with section ``name`` holding ``markdown``; appended at the end when it has no such section."""
    begin, end = markers(name)
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"


def write_section(name: str, markdown: str, path: Path = BENCHMARKS_MD) -> Path:
    """Rewrite section ``name`` of ``path`` (docs/BENCHMARKS.md) with ``markdown``; returns the path."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, name, markdown), encoding="utf-8")
    return path


def machine() -> str:
    """This machine in one phrase: cores, CPU model, memory, load average (Linux; what it cannot read it leaves out)."""
    parts = [f"{os.cpu_count()} cores"]
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
        parts[0] += f" ({model})"
    except (OSError, StopIteration):
        pass
    try:
        kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:")))
        parts.append(f"{kib / 2**20:.0f} GiB RAM")
    except (OSError, StopIteration, ValueError):
        pass
    parts.append(f"load average {os.getloadavg()[0]:.1f}")
    parts.append(f"Python {platform.python_version()}")
    return ", ".join(parts)


def stamp(command: str) -> str:
    """The first line of a section: the command, the date and the machine."""
    return f"`{command}`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine()}."
