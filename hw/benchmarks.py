"""BENCHMARKS.md: a Markdown file of sections, each written by one tool and replaced in place.

A section is the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``; its writer
(``make bench``'s scripts, the area report of ``fp8mac sweep --grid synth --benchmarks FILE``)
replaces only its own and leaves the others as they are.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HEADER", "update_section"]

HEADER = """# fp8mac benchmarks

Written by `make bench` (scripts in `scripts/`), never by hand. Every figure is a median of
repeated runs, and every comparison is measured side by side in the same run on the same machine;
absolute times vary between machines, ratios much less.
"""


def update_section(name: str, body: str, path) -> None:
    """Replace the section ``name`` of the file at ``path`` with ``body``, or append it (a new
    file starts with :data:`HEADER`)."""
    path = Path(path)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
