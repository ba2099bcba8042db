"""The tuned-config table: problem key -> config name, persisted as JSON.

Lookup order at call time (first hit wins):
  1. an explicit `config=` from the caller (handled by the ops),
  2. the user's table in the cache dir, written by `cudadent42 tune`,
  3. the table shipped in the package (configs/tuned_sm90.json: only entries
     measured by real sweeps on the named GPU),
  4. the heuristic.
Entries are per GPU name, so a table tuned on an H200 is not used on an H100.
Writes take a file lock and replace the file atomically, so two processes
tuning at once never lose or corrupt entries.
"""
from __future__ import annotations

import fcntl
import functools
import json
import os
import tempfile
import threading
from pathlib import Path

from .. import families
from ..jit import toolchain

FORMAT = 1
SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "tuned_sm90.json"
_lock = threading.Lock()
_user_cache: dict | None = None  # loaded once per process; record() keeps it current
version = 0  # bumped on every change, so callers may memoize lookups per version


def problem_key(family: str, **p) -> str:
    """Stable key of a problem class (the family's table_key). Sizes are bucketed
    to powers of two so one sweep covers the neighbourhood of the shape it ran on."""
    return families.get(family).table_key(p)


def user_table_path() -> Path:
    return toolchain.cache_dir() / "tuned" / "table.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("format") != FORMAT:
        return {}
    return data.get("entries", {})


@functools.lru_cache(maxsize=1)
def _shipped() -> dict:
    return _read(SHIPPED)


def _user() -> dict:
    global _user_cache
    if _user_cache is None:
        with _lock:
            if _user_cache is None:
                _user_cache = _read(user_table_path())
    return _user_cache


def reload() -> None:
    """Forget the in-process copy (tests, or after another process tuned)."""
    global _user_cache, version
    _user_cache = None
    version += 1
    _shipped.cache_clear()


def lookup(key: str, gpu: str) -> str | None:
    """Config name tuned for `key` on `gpu`, or None (then: heuristic)."""
    for table in (_user(), _shipped()):
        hit = table.get(f"{gpu}|{key}")
        if hit is not None:
            return hit["config"]
    return None


def record(key: str, gpu: str, config: str, **stats) -> None:
    """Persist `config` as the winner for `key` on `gpu` (atomic, locked)."""
    path = user_table_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        entries = _read(path)  # re-read under the lock: another process may have written
        entries[f"{gpu}|{key}"] = dict(config=config, **stats)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".table-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"format": FORMAT, "entries": entries}, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    global _user_cache, version
    with _lock:
        _user_cache = entries
        version += 1
