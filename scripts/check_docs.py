#!/usr/bin/env python3
"""Checks that the code shown in docs/*.md is the code that is compiled.

A fenced block in a docs page is checked when the line right before its fence
is one of these tags:

  <!-- snippet: FILE#MARKER -->
      FILE is in docs/snippets/. The block must equal the lines between the two
      `// [MARKER]` comment lines of FILE, with their common indentation
      removed and any other marker lines inside dropped.
  <!-- quote: PATH -->
      PATH is relative to the repository root (a header, say). The block's
      lines, without their common indentation, must appear as consecutive
      lines of PATH (compared the same way).
  <!-- output: FILE [ARG...] -->
      The block must equal the standard output of the snippet program built
      from docs/snippets/FILE (executable psap_doc_<stem> in --bin-dir) run
      with ARGs. Skipped, with a note, when --bin-dir is not given.

Also checked: every snippet file's markers come in pairs, and links to
headings of existing pages (file.md#anchor, GitHub's anchors) resolve.
Reported but not failed: ```cpp blocks without a tag (use ```text for
pseudo-code) and relative links to files that do not exist (yet).

Usage: check_docs.py [--root DIR] [--bin-dir DIR] [--fix] [--strict]
  --fix     rewrite snippet and output blocks from their sources
  --strict  untagged ```cpp blocks and dangling links are errors too
Exit status 0 when every tagged block matches, 1 otherwise. Python 3 stdlib only.
"""

import argparse
import os
import re
import subprocess
import sys

MARKER = re.compile(r"^\s*//\s*\[([A-Za-z0-9_.-]+)\]\s*$")
TAG = re.compile(r"^\s*<!--\s*(snippet|quote|output):\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")
LINK = re.compile(r"\]\(([^)#\s]*)(#[^)\s]*)?\)")


def dedent(lines):
    """Removes the common leading whitespace of the non-blank lines."""
    widths = [len(l) - len(l.lstrip(" \t")) for l in lines if l.strip()]
    cut = min(widths) if widths else 0
    return [l[cut:] if l.strip() else "" for l in lines]


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")


class Snippets:
    """Marked regions of the files in docs/snippets/."""

    def __init__(self, directory):
        self.directory = directory
        self.cache = {}

    def regions(self, name, errors):
        if name in self.cache:
            return self.cache[name]
        path = os.path.join(self.directory, name)
        regions = {}
        if not os.path.isfile(path):
            self.cache[name] = None
            return None
        lines = read_lines(path)
        opened = {}
        for i, line in enumerate(lines):
            m = MARKER.match(line)
            if not m:
                continue
            key = m.group(1)
            if key in opened:
                body = [l for l in lines[opened.pop(key) + 1:i] if not MARKER.match(l)]
                if key in regions:
                    errors.append(f"{path}:{i + 1}: marker [{key}] is used for two regions")
                regions[key] = dedent(body)
            else:
                opened[key] = i
        for key, line in opened.items():
            errors.append(f"{path}:{line + 1}: marker [{key}] is opened but never closed")
        self.cache[name] = regions
        return regions


def blocks(lines):
    """Yields (tag_kind, tag_arg, tag_line, info, start, end) for each fenced
    block: lines[start:end] is its body; tag_* are None when untagged."""
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        ticks, info = m.group(2), m.group(3).strip()
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(ticks) and lines[j].strip().strip("`") == ""):
            j += 1
        tag = TAG.match(lines[i - 1]) if i > 0 else None
        if tag:
            yield tag.group(1), tag.group(2), i, info, i + 1, j
        else:
            yield None, None, i, info, i + 1, j
        i = j + 1


def contains_run(haystack, needle):
    """True when `needle` (dedented) equals some dedented run of `haystack`."""
    n = len(needle)
    if n == 0:
        return True
    first = needle[0].strip()
    for s in range(len(haystack) - n + 1):
        if haystack[s].strip() != first:
            continue
        if dedent(haystack[s:s + n]) == needle:
            return True
    return False


def run_output(bin_dir, arg, errors, where):
    parts = arg.split()
    stem = os.path.splitext(parts[0])[0]
    exe = os.path.join(bin_dir, "psap_doc_" + stem)
    if not os.path.isfile(exe):
        errors.append(f"{where}: no executable {exe}; build the snippet targets first")
        return None
    try:
        out = subprocess.run([exe] + parts[1:], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        errors.append(f"{where}: {exe} did not finish within 120 s")
        return None
    if out.returncode != 0:
        errors.append(f"{where}: {exe} {' '.join(parts[1:])} exited with status {out.returncode}: {out.stderr.strip()}")
        return None
    text = out.stdout[:-1] if out.stdout.endswith("\n") else out.stdout
    return text.split("\n")


def slugs(path):
    """GitHub's anchors of the headings of a Markdown file."""
    seen, out, fenced = {}, set(), False
    for line in read_lines(path):
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def first_difference(a, b):
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k, x, y
    k = min(len(a), len(b))
    return k, a[k] if k < len(a) else "<end>", b[k] if k < len(b) else "<end>"


def check_page(path, root, snippets, args, errors, notes):
    lines = read_lines(path)
    rel = os.path.relpath(path, root)
    changed = False
    replacements = []
    checked = 0
    for kind, arg, fence_line, info, start, end in blocks(lines):
        where = f"{rel}:{fence_line + 1}"
        body = lines[start:end]
        if kind is None:
            if info.split()[:1] in (["cpp"], ["c++"]):
                msg = f"{where}: ```{info} block without a snippet/quote tag (compiled code only, or use ```text)"
                (errors if args.strict else notes).append(msg)
            continue
        checked += 1
        if kind == "snippet":
            if "#" not in arg:
                errors.append(f"{where}: snippet tag '{arg}' needs FILE#MARKER")
                continue
            name, key = arg.split("#", 1)
            regions = snippets.regions(name, errors)
            if regions is None:
                errors.append(f"{where}: no snippet file docs/snippets/{name}")
                continue
            if key not in regions:
                errors.append(f"{where}: docs/snippets/{name} has no region [{key}]")
                continue
            expected = regions[key]
        elif kind == "quote":
            target = os.path.join(root, arg)
            if not os.path.isfile(target):
                errors.append(f"{where}: quoted file {arg} does not exist")
                continue
            if not contains_run(read_lines(target), dedent(body)):
                errors.append(f"{where}: the block is no longer a run of lines of {arg}; re-quote it from the file")
            continue
        else:  # output
            if not args.bin_dir:
                notes.append(f"{where}: output of {arg} not checked (no --bin-dir)")
                continue
            expected = run_output(args.bin_dir, arg, errors, where)
            if expected is None:
                continue
        if body != expected:
            if args.fix:
                replacements.append((start, end, expected))
                changed = True
            else:
                k, got, want = first_difference(body, expected)
                errors.append(f"{where}: block differs from {kind} {arg} at its line {k + 1}:\n"
                              f"    docs:    {got!r}\n    source:  {want!r}\n"
                              f"  (scripts/check_docs.py --fix rewrites it)")
    for m in LINK.finditer("\n".join(lines)):
        target, anchor = m.group(1), m.group(2)
        if re.match(r"^[a-z]+:", target):
            continue
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
        if not os.path.exists(resolved):
            msg = f"{rel}: link to {target}, which does not exist (yet)"
            (errors if args.strict else notes).append(msg)
        elif anchor and anchor != "#" and resolved.endswith(".md") and anchor[1:] not in slugs(resolved):
            errors.append(f"{rel}: link to {target}{anchor}: no such heading in {os.path.relpath(resolved, root)}")
    if changed:
        for start, end, expected in reversed(replacements):
            lines[start:end] = expected
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        notes.append(f"{rel}: rewrote {len(replacements)} block(s)")
    return checked


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=os.path.dirname(here), help="repository root")
    p.add_argument("--bin-dir", help="directory of the psap_doc_* executables (enables output checks)")
    p.add_argument("--fix", action="store_true", help="rewrite stale snippet/output blocks")
    p.add_argument("--strict", action="store_true", help="untagged cpp blocks and dangling links are errors")
    args = p.parse_args()

    docs = os.path.join(args.root, "docs")
    snippets = Snippets(os.path.join(docs, "snippets"))
    errors, notes = [], []
    pages = sorted(f for f in os.listdir(docs) if f.endswith(".md"))
    checked = sum(check_page(os.path.join(docs, f), args.root, snippets, args, errors, notes) for f in pages)
    for f in sorted(os.listdir(snippets.directory)):
        if f.endswith((".cpp", ".hpp")):
            snippets.regions(f, errors)
    for n in notes:
        print("note:", n)
    for e in errors:
        print("error:", e)
    print(f"check_docs: {len(pages)} pages, {checked} tagged blocks, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
