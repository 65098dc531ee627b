#!/usr/bin/env bash
# Checks the relative links of README.md and docs/*.md: each must name a
# file inside the repository (tracked, or new and not ignored), and a
# `#fragment` must be the GitHub slug of a heading in the Markdown file it
# names (or an `L12`/`L12-L20` line anchor on any other file). Links to
# other sites are not followed. Fenced code blocks, inline code and HTML
# comments are skipped.
#
#   scripts/check-links.sh            # from anywhere in the repository
#
# Prints each broken link as FILE:LINE: TARGET: REASON and exits 1, or
# prints "all links resolve" and exits 0. Needs python3 (scripts/test.sh
# installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

exec python3 - <<'PY'
import glob
import os
import re
import subprocess
import sys
import unicodedata
from urllib.parse import unquote

ROOT = os.path.realpath(".")
FILES = ["README.md"] + sorted(glob.glob("docs/*.md"))


def repository_files():
    """Files in the repository as a clone has them: tracked, plus new files
    not ignored (so a document being written can be linked). None outside
    git: then existence on disk decides."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True, capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    files = {p for p in out.decode("utf-8", "surrogateescape").split("\0") if p and os.path.lexists(p)}
    dirs = set()
    for f in files:
        d = os.path.dirname(f)
        while d and d not in dirs:
            dirs.add(d)
            d = os.path.dirname(d)
    return files, dirs


REPO = repository_files()

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
COMMENT = re.compile(r"<!--.*?-->", re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)


def prose(text):
    """The text with fenced code blocks, HTML comments and inline code
    blanked (newlines kept, so positions still give line numbers)."""
    lines = text.split("\n")
    out = []
    fence = None
    for line in lines:
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                out.append("")
                continue
            out.append(line)
        else:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip():
                fence = None
            out.append("")
    text = "\n".join(out)
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))
    text = COMMENT.sub(blank, text)
    return text


def heading_text(raw):
    """What GitHub renders of a heading's inline Markdown, as text."""
    t = CODE_SPAN.sub(lambda m: m.group(2).strip(), raw)
    t = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", t)      # links and images: their text
    t = re.sub(r"\[([^\]]*)\]\[[^\]]*\]", r"\1", t)        # reference links
    t = re.sub(r"<[^>]+>", "", t)                          # HTML tags
    t = t.replace("**", "").replace("*", "").replace("~~", "")
    return t.strip()


def slug(text):
    """GitHub's heading anchor (github-slugger): lower case, every character
    but letters, marks, numbers, connector punctuation, spaces and hyphens
    removed, each space a hyphen."""
    kept = []
    for ch in text.lower():
        cat = unicodedata.category(ch)
        if cat[0] in "LMN" or cat == "Pc" or ch in " -":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
NOT_PARAGRAPH = re.compile(r"^\s*([-*+]\s|\d+[.)]\s|#|\||>)")
ANCHOR = re.compile(r"<a\s[^>]*\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_anchors = {}


def anchors(path):
    """Every fragment a Markdown file answers to: heading slugs (repeats get
    -1, -2, … as on GitHub) and explicit HTML anchors."""
    if path in _anchors:
        return _anchors[path]
    with open(path, encoding="utf-8") as f:
        text = prose(f.read())
    seen = {}
    found = set(ANCHOR.findall(text))
    lines = text.split("\n")
    for i, line in enumerate(lines):
        raw = None
        m = ATX.match(line)
        if m:
            raw = m.group(2) or ""
        elif SETEXT.match(line) and i > 0 and lines[i - 1].strip() and not NOT_PARAGRAPH.match(lines[i - 1]) and not SETEXT.match(lines[i - 1]):
            raw = lines[i - 1].strip()
        if raw is None:
            continue
        s = slug(heading_text(raw))
        n = seen.get(s, 0)
        seen[s] = n + 1
        found.add(s if n == 0 else f"{s}-{n}")
    _anchors[path] = found
    return found


INLINE = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"                       # [text], one level of nested brackets
    r"\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"     # (target or <target>
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"          # optional title)
)
DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(<[^>\n]*>|\S+)", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
LINE_ANCHOR = re.compile(r"^L\d+(C\d+)?(-L\d+(C\d+)?)?$")


def exists(rel, want_dir):
    if REPO is None:
        return os.path.isdir(rel) if want_dir else os.path.exists(rel)
    files, dirs = REPO
    return rel in dirs if want_dir else (rel in files or rel in dirs)


def check(source, target):
    """Why `target`, linked from `source`, does not resolve; None if it does."""
    if SCHEME.match(target) or target.startswith("//"):
        return None
    path, _, fragment = target.partition("#")
    path = unquote(path)
    fragment = unquote(fragment)
    if path:
        base = ROOT if path.startswith("/") else os.path.dirname(os.path.join(ROOT, source))
        full = os.path.normpath(os.path.join(base, path.lstrip("/")))
        rel = os.path.relpath(full, ROOT)
        if rel == ".." or rel.startswith(".." + os.sep):
            return "outside the repository"
        if rel == ".":
            return None if not fragment else "a fragment on the repository root"
        if not exists(rel, path.endswith("/")):
            return "no such file in the repository"
    else:
        rel = source
    if not fragment:
        return None
    if os.path.isdir(rel):
        return f"#{fragment} on a directory"
    if rel.lower().endswith((".md", ".markdown")):
        if fragment in anchors(rel):
            return None
        return f"no heading in {rel} has the anchor #{fragment}"
    if LINE_ANCHOR.match(fragment):
        return None
    return f"#{fragment} on a file that is not Markdown (only line anchors like #L12 resolve there)"


broken = []
for source in FILES:
    with open(source, encoding="utf-8") as f:
        text = prose(f.read())
    text_no_code = CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    links = [(m.start(), m.group(1)) for m in INLINE.finditer(text_no_code)]
    links += [(m.start(), m.group(1)) for m in DEFINITION.finditer(text_no_code)]
    for at, target in sorted(links):
        target = target.strip()
        if target.startswith("<") and target.endswith(">"):
            target = target[1:-1].strip()
        line = text_no_code.count("\n", 0, at) + 1
        if not target:
            broken.append(f"{source}:{line}: (empty link)")
            continue
        why = check(source, target)
        if why:
            broken.append(f"{source}:{line}: {target}: {why}")

if broken:
    print("\n".join(broken))
    print(f"{len(broken)} broken link{'s' if len(broken) != 1 else ''}", file=sys.stderr)
    sys.exit(1)
print("all links resolve")
PY
