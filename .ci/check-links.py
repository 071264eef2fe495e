#!/usr/bin/env python3
"""Every relative link in the project's documentation resolves: the file it
names exists in the repository, and the anchor it names (`page.md#anchor`,
or `#anchor` within the page) is a heading of that page, as GitHub makes
anchors from headings.

    python3 .ci/check-links.py [FILE.md ...]

Without arguments it checks README.md, ARCHITECTURE.md, BENCHMARKS.md and
docs/*.md. Links to other sites (http:, https:, mailto:) are not followed.
Prints each broken link as FILE:LINE: TARGET: WHY and exits 1 if there is
any; otherwise prints how many links it checked.
"""

import glob
import os
import re
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# [text](target) and ![alt](target), with an optional "title".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target (reference definitions).
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def lines_outside_fences(text):
    """(line number, line) for each line not inside a fenced code block."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def slug(heading):
    """GitHub's anchor for a heading: its text (code spans' content kept,
    link targets and emphasis marks dropped), lower-cased, punctuation other
    than '-' and '_' removed, spaces made hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    out = []
    for ch in text.lower():
        if ch in " -_" or unicodedata.category(ch)[0] in "LN":
            out.append("-" if ch == " " else ch)
    return "".join(out)


def anchors(path, cache={}):
    """The anchors a Markdown file defines."""
    if path not in cache:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        found, seen = set(), {}
        for _, line in lines_outside_fences(text):
            m = HEADING.match(line)
            if m:
                base = slug(m.group(2))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else f"{base}-{n}")
            found.update(HTML_ANCHOR.findall(line))
        cache[path] = found
    return cache[path]


def links(path):
    """(line number, target) for each link in a Markdown file, outside code."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for number, line in lines_outside_fences(text):
        m = REF_DEF.match(line)
        if m:
            yield number, m.group(1)
            continue
        # Code spans are not links, but a link's text may hold one.
        line = CODE_SPAN.sub(lambda m: "x" * len(m.group(0)), line)
        for m in LINK.finditer(line):
            yield number, m.group(1)


def check(path):
    """The broken links of one file, as (line, target, why)."""
    broken = []
    here = os.path.dirname(path)
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # another site (http:, https:, mailto:)
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(here, file_part)) if file_part else path
        if not dest.startswith(ROOT + os.sep) and dest != ROOT:
            broken.append((number, target, "points outside the repository"))
            continue
        if not os.path.exists(dest):
            broken.append((number, target, f"no such file {os.path.relpath(dest, ROOT)}"))
            continue
        if anchor:
            if not dest.endswith(".md") or os.path.isdir(dest):
                broken.append((number, target, "an anchor into a file that is not Markdown"))
            elif anchor not in anchors(dest):
                broken.append((number, target, f"no heading #{anchor} in {os.path.relpath(dest, ROOT)}"))
    return broken


def main():
    if len(sys.argv) > 1:
        files = [os.path.abspath(p) for p in sys.argv[1:]]
    else:
        files = [os.path.join(ROOT, p) for p in ("README.md", "ARCHITECTURE.md", "BENCHMARKS.md")]
        files += sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    failed, checked = 0, 0
    for path in files:
        if not os.path.exists(path):
            print(f"{os.path.relpath(path, ROOT)}: missing")
            failed += 1
            continue
        checked += sum(1 for _ in links(path))
        for number, target, why in check(path):
            print(f"{os.path.relpath(path, ROOT)}:{number}: {target}: {why}")
            failed += 1
    if failed:
        print(f"check-links: {failed} broken link(s)")
        return 1
    print(f"check-links: {checked} links in {len(files)} files resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
