#!/usr/bin/env python3
"""Counts production lines of Rust sources: every line outside `#[cfg(test)]` items.

Usage: scripts/prod-lines.py [DIR...]   (default: crates/rivulet/src)

A `#[cfg(test)]` attribute skips the item that follows it: up to its closing brace when
it has a body (`mod tests { ... }`), or the one line when it ends in `;`. Braces inside
strings and comments are counted too, which is close enough for our code (no brace in a
test module's strings goes unmatched).
"""
import os
import sys


def production_lines(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    count, i = 0, 0
    while i < len(lines):
        if lines[i].strip() == "#[cfg(test)]":
            j, depth, opened = i + 1, 0, False
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                opened = opened or "{" in lines[j]
                if (opened and depth <= 0) or (not opened and lines[j].rstrip().endswith(";")):
                    break
                j += 1
            i = j + 1
            continue
        count += 1
        i += 1
    return count


def main():
    roots = sys.argv[1:] or ["crates/rivulet/src"]
    total = 0
    for root in roots:
        files = [root] if root.endswith(".rs") else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".rs"))
        for path in files:
            n = production_lines(path)
            total += n
            print(f"{n:6} {path}")
    print(f"{total:6} total")


if __name__ == "__main__":
    main()
