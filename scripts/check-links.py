#!/usr/bin/env python3
"""Check the links of the repository's Markdown documents.

Every `](target)` link and every `[ref]: target` definition outside code is checked:

- a link to another file must be relative and stay inside the repository (no
  `../shared/…`, no `/absolute/path`), and the file or directory must exist;
- a `#anchor` (alone, or after a `.md` file) must name a heading of that file, slugged
  the way GitHub does it (`## Hot A/B pipelines` is `#hot-ab-pipelines`), or an HTML
  `id`/`name` in it;
- `http:`, `https:` and `mailto:` links are not fetched.

Usage: scripts/check-links.py [FILE_OR_DIR…]   (default: every *.md of the repository,
outside .git, target/ and node_modules/). Prints one line per dead link and exits 1 if
there is any, 0 otherwise.
"""

import os
import re
import sys
import unicodedata
from urllib.parse import unquote

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SKIP_DIRS = {".git", "target", "node_modules"}
EXTERNAL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, https:, mailto:, …
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*(?:#+[ \t]*)?$|^ {0,3}(#{1,6})[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
HTML_ID = re.compile(r"""<[^>]*\b(?:id|name)\s*=\s*["']([^"']+)["']""")
REF_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)")


def markdown_files(args):
    paths = args or [ROOT]
    for path in paths:
        if os.path.isfile(path):
            yield os.path.realpath(path)
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                if name.endswith(".md"):
                    yield os.path.realpath(os.path.join(dirpath, name))


def blocks(lines):
    """Runs of consecutive non-blank lines outside fenced code: (first line number, text)."""
    fence = None
    current, start = [], 0
    for number, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            if current:
                yield start, "\n".join(current)
                current = []
            fence = m.group(1)
            continue
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            yield start, "\n".join(current)
            current = []
    if current:
        yield start, "\n".join(current)


def code_spans(text):
    """Character ranges of inline code spans (a run of N backticks closes with N)."""
    spans, i = [], 0
    while True:
        m = re.compile(r"`+").search(text, i)
        if not m:
            return spans
        ticks = m.group(0)
        close = re.compile(r"(?<!`)" + ticks + r"(?!`)").search(text, m.end())
        if not close:
            i = m.end()
            continue
        spans.append((m.start(), close.end()))
        i = close.end()


def slug(heading):
    """GitHub's anchor for a heading's text (github-slugger)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    kept = []
    for c in text:
        category = unicodedata.category(c)
        if c in " -_" or category[0] in "LNM" or category == "Pc":
            kept.append(c)
    return "".join(kept).replace(" ", "-")


_anchor_cache = {}


def anchors(path):
    if path in _anchor_cache:
        return _anchor_cache[path]
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    found, seen = set(), {}

    def add(text):
        base = slug(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")

    for _, block in blocks(lines):
        block_lines = block.split("\n")
        for i, line in enumerate(block_lines):
            m = ATX.match(line)
            if m:
                add(m.group(2) or "")
            elif i > 0 and SETEXT.match(line) and not ATX.match(block_lines[i - 1]):
                add(block_lines[i - 1])
        found.update(HTML_ID.findall(block))
    _anchor_cache[path] = found
    return found


def link_targets(block):
    """(offset, target) of every `](target)` outside code spans, and of `[ref]: target`."""
    spans = code_spans(block)

    def in_code(pos):
        return any(a <= pos < b for a, b in spans)

    for m in re.finditer(r"\]\(", block):
        if in_code(m.start()):
            continue
        i = m.end()
        while i < len(block) and block[i] in " \t\n":
            i += 1
        if block.startswith("<", i):
            end = block.find(">", i)
            if end < 0:
                continue
            yield m.start(), block[i + 1 : end]
            continue
        depth, j = 0, i
        while j < len(block):
            c = block[j]
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
            elif c in " \t\n":
                break
            j += 1
        yield m.start(), block[i:j]
    offset = 0
    for line in block.split("\n"):
        m = REF_DEF.match(line)
        if m and not in_code(offset):
            yield offset, m.group(2).strip("<>")
        offset += len(line) + 1


def check_link(source, target):
    """None if the link works in a clone, else why not."""
    if not target:
        return "empty link"
    if EXTERNAL.match(target):
        return None
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    if path_part.startswith("/"):
        return "absolute path: use a link relative to this file"
    if path_part:
        resolved = os.path.realpath(os.path.join(os.path.dirname(source), path_part))
        if resolved != ROOT and not resolved.startswith(ROOT + os.sep):
            return "points outside the repository"
        if not os.path.exists(resolved):
            return "no such file"
    else:
        resolved = source
    if anchor and resolved.endswith(".md") and os.path.isfile(resolved):
        if unquote(anchor) not in anchors(resolved):
            return f"no heading for #{anchor} in {os.path.relpath(resolved, ROOT)}"
    return None


def main(argv):
    dead = checked = 0
    for path in markdown_files(argv[1:]):
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        for start, block in blocks(lines):
            for offset, target in link_targets(block):
                checked += 1
                reason = check_link(path, target)
                if reason:
                    dead += 1
                    line = start + block.count("\n", 0, offset)
                    print(f"{os.path.relpath(path, ROOT)}:{line}: {target}: {reason}")
    print(f"check-links: {checked} links checked, {dead} dead", file=sys.stderr)
    return 1 if dead else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
