"""The files under csrc/ that one generated translation unit includes.

A kernel's cache key hashes these files only, so an edit to an attention
header leaves every GEMM entry valid (hashing all of csrc/ rebuilt every
config, 20-35 s each, after any edit). Resolution follows the preprocessor
for the flags the JIT passes (-I<csrc> first, then CUTLASS): `#include "x"`
is looked up next to the including file, then under csrc/; `#include <x>`
under csrc/ only. What does not resolve under csrc/ belongs to CUTLASS or
the system, whose versions are keyed separately. Every #include line
counts, also under #if, so the closure can only be too large, never too small.
"""
from __future__ import annotations

import re
from pathlib import Path

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.M)


def _resolve(target: str, quoted: bool, here: Path | None, root: Path) -> Path | None:
    bases = ([here] if quoted and here is not None else []) + [root]
    for base in bases:
        cand = (base / target).resolve()
        if cand.is_file() and cand.is_relative_to(root):
            return cand
    return None


def closure(source: str, root: Path) -> list[Path]:
    """Paths relative to `root` of every file `source` includes, transitively, sorted."""
    root = Path(root).resolve()
    seen: set[Path] = set()
    todo = [(source, None)]
    while todo:
        text, here = todo.pop()
        for bracket, target in _INCLUDE.findall(text):
            path = _resolve(target.strip(), bracket == '"', here, root)
            if path is not None and path not in seen:
                seen.add(path)
                todo.append((path.read_text(errors="replace"), path.parent))
    return sorted(p.relative_to(root) for p in seen)


def hash_closure(h, source: str, root: Path) -> list[Path]:
    """Feed each included file's relative path and bytes into hashlib object `h`; returns the files."""
    files = closure(source, root)
    root = Path(root).resolve()
    for rel in files:
        h.update(rel.as_posix().encode() + b"\0")
        h.update((root / rel).read_bytes() + b"\0")
    return files
