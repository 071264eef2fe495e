"""Sections of BENCHMARKS.md measured by commands other than the benches
(each section names its own), kept as Markdown files in benches/sections/
and placed, in file-name order, before the Details. Edit the file, not
BENCHMARKS.md: run_all.py writes the report anew each time."""

from pathlib import Path

SECTIONS = Path(__file__).resolve().parent / "sections"


def with_fragments(doc):
    """`doc` (a list of Markdown blocks) with every fragment before the
    Details."""
    blocks = [f.read_text().rstrip("\n") + "\n" for f in sorted(SECTIONS.glob("*.md"))]
    at = next((i for i, block in enumerate(doc) if block.startswith("## Details")), len(doc))
    return doc[:at] + blocks + doc[at:]
