#!/usr/bin/env python3
"""Compiles every `.attn` example in the documentation.

Reads the given Markdown files (and every `*.md` under the given folders) and
extracts their fenced code blocks whose info string starts with

    attn         a complete file that must compile: `attnc FILE --emit=mlir`
                 exits 0 and prints IR; when the file holds at least one
                 `attention` block the IR must contain `attn.variant`;
    attn-error   a complete file that must be rejected: attnc exits 1 and
                 prints an `error:` diagnostic.

Other blocks (```text, ```mlir, ```sh, ...) are left alone. Each block is
written to its own temporary file. One line is printed per block,
`OK docs/language.md:123` or `FAIL docs/language.md:123: why`, where the
number is the line of the opening fence; the script exits 1 when any block
fails or when it finds no block at all (a sign that the docs went missing or
the fences changed).

Usage: check_doc_examples.py --attnc BIN [--root DIR] [--lower] PATH...
       check_doc_examples.py --prelude PRELUDE.attn PATH...
  --root     paths are printed relative to DIR (default: the common parent
             of the PATHs' parent folders)
  --lower    also run `--emit=loops --variant NAME` for every attention block
             of every ```attn example (slower; not needed by the lit test)
  --prelude  instead, check that every def of the prelude is documented:
             `NAME(` appears in a table row (a line starting with `|`) of
             the given Markdown files
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
ATTENTION = re.compile(r"^\s*attention\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)
COMMENT = re.compile(r"//[^\n]*")
TIMEOUT_S = 120


class Block:
    def __init__(self, path, line, kind, text):
        self.path, self.line, self.kind, self.text = path, line, kind, text


def markdown_files(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files += [os.path.join(root, n) for n in sorted(names)
                          if n.endswith(".md")]
        elif os.path.isfile(p):
            files.append(p)
        else:
            sys.exit("check_doc_examples.py: no such file or folder: " + p)
    return files


def extract_blocks(path):
    """Fenced blocks of `path` as (opening line, info word, body) triples.

    A fence is three or more backticks or tildes; it is closed by a line of
    the same character, at least as long, with nothing else on it and
    indented at most 3 columns more than the opening fence (so an indented
    ``` inside a block does not close it). Content lines lose the opening
    fence's indentation (fences inside list items).
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m or (m.group("fence")[0] == "`" and "`" in m.group("info")):
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        info = m.group("info").strip().split()
        word = info[0] if info else ""
        start = i + 1  # 1-based line number of the opening fence
        body = []
        i += 1
        closed = False
        while i < len(lines):
            stripped = lines[i].strip()
            lead = len(lines[i]) - len(lines[i].lstrip(" \t"))
            if (stripped and set(stripped) == {fence[0]}
                    and len(stripped) >= len(fence) and lead <= indent + 3):
                closed = True
                break
            line = lines[i]
            cut = 0
            while cut < indent and cut < len(line) and line[cut] in " \t":
                cut += 1
            body.append(line[cut:])
            i += 1
        if not closed:
            blocks.append((start, "unclosed", ""))
            break
        i += 1
        blocks.append((start, word, "\n".join(body) + "\n"))
    return blocks


def run(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, "", "timed out after %d s" % TIMEOUT_S
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def excerpt(text, limit=12):
    lines = text.rstrip("\n").split("\n")
    if len(lines) > limit:
        lines = lines[:limit] + ["..."]
    return "\n".join("    | " + l for l in lines)


def check_prelude(prelude, files):
    """Names of prelude defs that no table row of `files` mentions."""
    with open(prelude, encoding="utf-8") as f:
        names = re.findall(r"^\s*def\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(",
                           COMMENT.sub("", f.read()), re.M)
    rows = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            rows += [l for l in f if l.lstrip().startswith("|")]
    return names, [n for n in names
                   if not any(re.search(r"\b%s\(" % re.escape(n), r)
                              for r in rows)]


def check_block(attnc, block, tmpdir, lower):
    """Returns None when the block behaves as its fence says, else why not."""
    name = "%s_%d.attn" % (os.path.splitext(os.path.basename(block.path))[0],
                           block.line)
    src = os.path.join(tmpdir, name)
    with open(src, "w", encoding="utf-8") as f:
        f.write(block.text)
    rc, out, err = run([attnc, src, "--emit=mlir"])
    if rc is None:
        return err
    if rc < 0 or rc > 1:
        return "attnc crashed or exited with status %d\n%s" % (rc, excerpt(err))
    if block.kind == "attn-error":
        if rc != 1:
            return "expected attnc to reject this file, but it compiled"
        if "error:" not in err and "error:" not in out:
            return "attnc exited 1 without an 'error:' diagnostic"
        return None
    if rc != 0:
        return "attnc rejected the file (exit %d)\n%s" % (rc, excerpt(err))
    if not out.strip():
        return "attnc printed nothing"
    names = ATTENTION.findall(COMMENT.sub("", block.text))
    if names and "attn.variant" not in out:
        return "the output holds no attn.variant\n%s" % excerpt(out)
    if lower:
        for variant in names:
            rc, _, err = run([attnc, src, "--emit=loops", "--variant", variant])
            if rc != 0:
                return "--emit=loops --variant %s failed (exit %s)\n%s" % (
                    variant, rc, excerpt(err))
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attnc", help="the attnc binary")
    ap.add_argument("--prelude", help="check that this prelude is documented")
    ap.add_argument("--root", help="print paths relative to this folder")
    ap.add_argument("--lower", action="store_true",
                    help="also lower every variant with --emit=loops")
    ap.add_argument("paths", nargs="+", help="Markdown files or folders")
    args = ap.parse_args()

    files = markdown_files(args.paths)
    if args.prelude:
        names, missing = check_prelude(args.prelude, files)
        for n in names:
            print(("FAIL undocumented prelude def: " if n in missing else
                   "OK ") + n)
        if not names:
            print("FAIL: no def found in " + args.prelude)
        return 1 if missing or not names else 0
    if not args.attnc:
        ap.error("--attnc is required")
    root = args.root or os.path.commonpath(
        [os.path.dirname(os.path.abspath(p.rstrip("/"))) for p in args.paths])

    blocks, bad = [], []
    for path in files:
        shown = os.path.relpath(os.path.abspath(path), root)
        for line, word, text in extract_blocks(path):
            if word == "unclosed":
                bad.append("%s:%d: unclosed code fence" % (shown, line))
                continue
            if word in ("attn", "attn-error"):
                blocks.append(Block(shown, line, word, text))

    with tempfile.TemporaryDirectory(prefix="attn-doc-") as tmpdir:
        for block in blocks:
            why = check_block(args.attnc, block, tmpdir, args.lower)
            where = "%s:%d" % (block.path, block.line)
            if why is None:
                print("OK " + where)
            else:
                print("FAIL %s: %s" % (where, why))
                bad.append(where)

    if not blocks:
        print("FAIL: no ```attn or ```attn-error block found in: " +
              ", ".join(args.paths))
    else:
        print("%d example(s) checked in %d file(s)" % (len(blocks), len(files)))
    if bad:
        print("%d bad example(s):" % len(bad))
        for where in bad:
            print("  " + where)
    return 1 if bad or not blocks else 0


if __name__ == "__main__":
    sys.exit(main())
