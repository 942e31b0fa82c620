"""benchmarks/report.py: a benchmark rewrites its own section of docs/BENCHMARKS.md and nothing else."""

import pytest

from benchmarks.report import markers, replace_section, write_section

DOC = """# Benchmarks

## Serving

Aim: by hand.

<!-- bench:serve -->
old serve figures
<!-- /bench:serve -->

What it means: by hand.

## Bots

<!-- bench:bots -->
| old | bots |
<!-- /bench:bots -->
"""


def test_replaces_only_its_own_section():
    text = replace_section(DOC, "serve", "| new | serve |\n")
    assert "| new | serve |" in text
    assert "old serve figures" not in text
    assert text.replace("| new | serve |", "old serve figures") == DOC


def test_creates_a_missing_section_at_the_end():
    text = replace_section(DOC, "decay", "| decay |")
    assert text.startswith(DOC.rstrip("\n"))
    assert text.endswith("<!-- bench:decay -->\n| decay |\n<!-- /bench:decay -->\n")
    assert replace_section("", "decay", "x") == "<!-- bench:decay -->\nx\n<!-- /bench:decay -->\n"


def test_is_idempotent():
    once = replace_section(DOC, "bots", "| new | bots |")
    assert replace_section(once, "bots", "| new | bots |") == once
    assert once.count("<!-- bench:bots -->") == 1


def test_a_name_that_prefixes_another_does_not_touch_it():
    doc = replace_section(DOC, "serve-batch", "batch figures")
    text = replace_section(doc, "serve", "new serve")
    assert "batch figures" in text and "old serve figures" not in text


def test_markdown_with_backslashes_is_kept_verbatim():
    assert r"C:\new \1 \g<0>" in replace_section(DOC, "serve", r"C:\new \1 \g<0>")


def test_write_section_rewrites_the_file(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(DOC)
    write_section("bots", "| new | bots |", path)
    assert path.read_text() == replace_section(DOC, "bots", "| new | bots |")
    fresh = write_section("serve", "figures", tmp_path / "docs" / "NEW.md")
    assert fresh.read_text() == "# Benchmarks\n\n<!-- bench:serve -->\nfigures\n<!-- /bench:serve -->\n"


def test_names_are_checked():
    assert markers("bench-serve") == ("<!-- bench:bench-serve -->", "<!-- /bench:bench-serve -->")
    with pytest.raises(ValueError, match="lower-case"):
        markers("Serve -->")
