"""Disk cache of JIT-built kernels (one shared library per kernel config).

Layout under cache_dir():
    <name>.<digest>/        finished entry: kernel.cu kernel.so build.log meta.json
    .tmp-<name>.<digest>-*/ build in progress (renamed into place atomically)
    .locks/<entry>.lock     fcntl lock serialising builders of one entry
    failed/<name>.<digest>/ last failed build of a config, kept for inspection

An entry directory only ever appears through os.rename of a complete temp
folder, so readers never need a lock: if the folder exists and its kernel.so
matches the sha256 in meta.json, it is good.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import dataclasses
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from . import toolchain
from .ptxas import parse_ptxas, summary

# Bump when the entry layout / meta schema / build recipe changes so old
# entries are ignored instead of misread.
CACHE_FORMAT = 1

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_LOG_TAIL = 40


class BuildError(RuntimeError):
    """A kernel config failed to build or failed the clean-kernel checks."""


@dataclasses.dataclass
class BuildResult:
    name: str
    ok: bool
    path: Path | None
    error: str | None
    seconds: float
    cached: bool


def _env_on(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_tree(h, root: Path) -> None:
    # Every file under csrc/ can be #included by a kernel, so all of them are
    # part of the key; sorted relative paths make the hash order-independent.
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")


def _relocatable_flags() -> list[str]:
    # The csrc/ and CUTLASS include directories enter the key by content
    # (the csrc tree hash, the CUTLASS version), not by where they live, so
    # a cache built in one checkout is valid in another with the same sources.
    own = {f"-I{toolchain.csrc_dir()}": "-I<csrc>"}
    own.update({f"-I{d}": f"-I<cutlass:{i}>" for i, d in enumerate(toolchain.cutlass_include_dirs())})
    return [own.get(f, f) for f in toolchain.nvcc_flags()]


def digest(spec) -> str:
    h = hashlib.sha256()
    parts = (f"format={CACHE_FORMAT}", spec.key(), spec.render(), "\0".join(_relocatable_flags()),
             toolchain.nvcc_version(), toolchain.cutlass_version())
    for part in parts:
        h.update(part.encode() + b"\0\1")  # separator: no ambiguity between adjacent parts
    _hash_tree(h, toolchain.csrc_dir())
    return h.hexdigest()[:16]


def entry_dir(spec) -> Path:
    if not _SAFE_NAME.match(spec.name):
        raise ValueError(f"kernel config name {spec.name!r} is not filesystem-safe")
    return toolchain.cache_dir() / f"{spec.name}.{digest(spec)}"


def _read_meta(entry: Path) -> dict | None:
    """meta.json of a *valid* entry, else None (missing, unparsable, .so mismatch)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        ok = meta.get("cache_format") == CACHE_FORMAT  # raises on non-dict JSON too
        return meta if ok and _sha256_file(entry / "kernel.so") == meta.get("so_sha256") else None
    except (OSError, ValueError, AttributeError):
        return None


def _discard(path: Path) -> None:
    # Rename first so the bad folder disappears from its name atomically; the
    # slow rmtree then cannot race with a builder renaming a fresh entry in.
    aside = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _entry_lock(entry_name: str):
    locks = toolchain.cache_dir() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    # flock locks belong to the open file description, so this serialises
    # threads of one process as well as separate processes.
    with open(locks / f"{entry_name}.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _unclean_reasons(p: dict) -> list[str]:
    reasons = []
    if p.get("serialized"):
        codes = ", ".join(p.get("codes") or []) or "C75xx"
        lines = [w for w in p.get("warnings", []) if "serialized" in w]
        reasons.append(f"ptxas warning {codes} (wgmma serialized): {lines[0] if lines else ''}")
    if p.get("spill_stores", 0) > 0 or p.get("spill_loads", 0) > 0:
        reasons.append(f"register spills: {p['spill_stores']} bytes stores / {p['spill_loads']} bytes loads")
    return reasons


def _error(spec, dig, cmd, reason, log_path, log_text) -> BuildError:
    tail = "\n".join(log_text.rstrip().splitlines()[-_LOG_TAIL:])
    return BuildError(
        f"failed to build kernel config {spec.name!r} (digest {dig})\n  reason: {reason}\n"
        f"  command: {cmd}\n  log: {log_path}\n--- last lines of the build log ---\n{tail}"
    )


def _compile(spec, entry: Path, strict: bool) -> Path:
    """Build into a temp folder and rename it to `entry`. Caller holds the lock."""
    root = toolchain.cache_dir()
    dig = entry.name.rsplit(".", 1)[1]
    debug = _env_on("CUDADENT42_JIT_DEBUG")
    allow_unclean = _env_on("CUDADENT42_ALLOW_UNCLEAN")
    nvcc = toolchain.find_nvcc()
    flags = toolchain.nvcc_flags()
    # -keep leaves .ptx/.cubin next to kernel.cu (cwd), so they travel with the entry.
    cmd = [nvcc, *flags, *(["-keep"] if debug else []), "-o", "kernel.so", "kernel.cu"]
    cmd_str = shlex.join(cmd)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=root))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; entries may live in a shared cache
        (tmp / "kernel.cu").write_text(spec.render())
        if debug:
            print(f"[cudadent42.jit] {spec.name}: {cmd_str}", file=sys.stderr)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.monotonic() - t0
        log = proc.stdout or ""
        (tmp / "build.log").write_text(f"$ {cmd_str}\n(exit status {proc.returncode})\n{log}")
        p = parse_ptxas(log)
        if debug:
            print(f"[cudadent42.jit] {spec.name}: ptxas {summary(p)}", file=sys.stderr)
        reason, unclean = None, _unclean_reasons(p)
        if proc.returncode != 0 or not (tmp / "kernel.so").is_file():
            reason = f"nvcc exited with status {proc.returncode}"
        elif unclean and strict and not allow_unclean:
            reason = "; ".join(unclean) + " (set CUDADENT42_ALLOW_UNCLEAN=1 to accept)"
        if reason:
            # Keep the failed build around (replacing an older failure of the
            # same config) so the log, source and PTX can be inspected.
            failed = root / "failed" / entry.name
            failed.parent.mkdir(parents=True, exist_ok=True)
            _discard(failed)  # no-op if absent
            os.rename(tmp, failed)
            raise _error(spec, dig, cmd_str, reason, failed / "build.log", log)
        # ptxas numbers sit at the top level of meta.json (registers, spill_*,
        # c7510, serialized, warnings, ...) next to the build provenance.
        meta = dict(
            **p, cache_format=CACHE_FORMAT, name=spec.name, digest=dig, key=spec.key(),
            nvcc=nvcc, nvcc_version=toolchain.nvcc_version(),
            cutlass_version=toolchain.cutlass_version(), flags=flags, command=cmd_str,
            build_seconds=round(seconds, 3), created=time.time(),
            created_iso=time.strftime("%Y-%m-%dT%H:%M:%S%z"), strict=strict,
            allow_unclean=allow_unclean, unclean=unclean, debug=debug,
            so_sha256=_sha256_file(tmp / "kernel.so"),
            # ptxas only sees static smem; the kernels use dynamic smem sized by the config.
            dynamic_smem_bytes=spec.smem_bytes() if hasattr(spec, "smem_bytes") else None,
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        try:
            os.rename(tmp, entry)
        except OSError:
            # Target appeared meanwhile (builder that ignored the lock, e.g. on
            # a filesystem without flock); theirs is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
            if _read_meta(entry) is None:
                raise
        return entry
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_hit(spec, entry: Path, strict: bool) -> bool:
    meta = _read_meta(entry)
    # An entry built under CUDADENT42_ALLOW_UNCLEAN must not be silently used
    # by a strict caller later; rebuilding would give the same kernel, so fail.
    if meta and meta.get("unclean") and strict and not _env_on("CUDADENT42_ALLOW_UNCLEAN"):
        raise BuildError(
            f"cached kernel config {spec.name!r} at {entry} was built unclean "
            f"({'; '.join(meta['unclean'])}); set CUDADENT42_ALLOW_UNCLEAN=1 or "
            f"`cudadent42 cache clear {spec.name}`"
        )
    return meta is not None


def _build_one(spec, strict: bool) -> tuple[Path, bool]:
    """(entry path, was_cached)."""
    entry = entry_dir(spec)
    if _is_hit(spec, entry, strict):
        return entry, True
    entry.parent.mkdir(parents=True, exist_ok=True)
    with _entry_lock(entry.name):
        if _is_hit(spec, entry, strict):  # another process finished it while we waited
            return entry, True
        if entry.exists():
            _discard(entry)  # corrupted / half-written: rebuild it
        return _compile(spec, entry, strict), False


def build_one(spec, *, strict: bool = True) -> Path:
    return _build_one(spec, strict)[0]


class LoadedKernel:
    def __init__(self, name: str, dir: Path, meta: dict, lib: ctypes.CDLL):
        self.name, self.dir, self.meta, self.lib = name, dir, meta, lib
        self._fns: dict = {}
        self._lock = threading.Lock()

    def fn(self, symbol: str, restype, argtypes):
        key = (symbol, restype, tuple(argtypes))
        with self._lock:
            f = self._fns.get(key)
            if f is None:
                # lib[symbol] returns a fresh function object each time, so the
                # types set here are private to this (symbol, signature).
                f = self.lib[symbol]
                f.restype, f.argtypes = restype, list(argtypes)
                self._fns[key] = f
            return f

    def __repr__(self):
        return f"LoadedKernel({self.name!r}, {str(self.dir)!r})"


_LOADED: dict[tuple[str, str], LoadedKernel] = {}
_LOADED_LOCK = threading.Lock()
# Builds that failed in this process: a second call raises the same error at
# once instead of spending another nvcc run on a config known to fail.
_FAILED: dict[tuple[str, str, bool], BuildError] = {}


def load(spec, *, strict: bool = True) -> LoadedKernel:
    # Keyed on key() only (not render()/digest) so the hot path does no
    # hashing and no disk access; a process sees one build per config.
    k = (spec.name, spec.key())
    hit = _LOADED.get(k)
    if hit is not None:
        return hit
    failed = _FAILED.get((*k, strict))
    if failed is not None:
        raise failed
    try:
        path = build_one(spec, strict=strict)
    except BuildError as e:
        _FAILED[(*k, strict)] = e
        raise
    with _LOADED_LOCK:
        hit = _LOADED.get(k)
        if hit is None:
            meta = json.loads((path / "meta.json").read_text())
            lib = ctypes.CDLL(str(path / "kernel.so"), mode=os.RTLD_LOCAL)
            hit = _LOADED[k] = LoadedKernel(spec.name, path, meta, lib)
        return hit


class _Progress:
    """Minimal stderr progress bar; redraws in place on a TTY, one line per step otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.tty = total, enabled and total > 0, sys.stderr.isatty()
        self.built = self.cached = self.failed = 0
        self._lock = threading.Lock()

    def step(self, res: BuildResult) -> None:
        with self._lock:
            kind = "failed" if not res.ok else "cached" if res.cached else "built"
            setattr(self, kind, getattr(self, kind) + 1)
            if not self.enabled:
                return
            done = self.built + self.cached + self.failed
            fill = 20 * done // self.total
            line = (
                f"[{'#' * fill}{'.' * (20 - fill)}] {self.built}/{self.total} built, "
                f"{self.cached} cached, {self.failed} failed  {res.name}"
            )
            # On a TTY redraw in place (final newline when done); else one line per step.
            end = "\n" if done == self.total or not self.tty else ""
            sys.stderr.write(("\r\033[K" if self.tty else "") + line + end)
            sys.stderr.flush()


def build(specs, jobs: int | None = None, progress: bool = True, strict: bool = True):
    """Build many configs in parallel; returns one BuildResult per spec, in order.

    Threads suffice: the work is in the nvcc subprocess.  Failures are
    recorded per spec so one broken config does not stop the others.
    """
    specs = list(specs)
    bar = _Progress(len(specs), progress)

    def one(spec) -> BuildResult:
        t0 = time.monotonic()
        try:
            path, cached = _build_one(spec, strict)
            res = BuildResult(spec.name, True, path, None, time.monotonic() - t0, cached)
        except Exception as e:  # noqa: BLE001 - any failure is recorded, never aborts the batch
            res = BuildResult(spec.name, False, None, str(e), time.monotonic() - t0, False)
        bar.step(res)
        return res

    with cf.ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as ex:
        return list(ex.map(one, specs))


def _entries() -> list[Path]:
    root = toolchain.cache_dir()
    kids = root.iterdir() if root.is_dir() else ()
    return sorted(p for p in kids if p.is_dir() and p.name[0] != "." and p.name != "failed" and "." in p.name)


def _tree_size(p: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(p):  # os.walk ignores folders vanishing mid-walk
        for f in files:
            with contextlib.suppress(OSError):  # a concurrent clear may remove files
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def list_entries() -> list[dict]:
    out = []
    for p in _entries():
        name, dig = p.name.rsplit(".", 1)
        meta = _read_meta(p)
        m = meta or {}
        spills = m.get("spill_stores", 0) + m.get("spill_loads", 0) if meta else None
        out.append(dict(
            name=name, digest=dig, path=str(p), size=_tree_size(p), registers=m.get("registers"),
            smem=m.get("smem_bytes"), smem_bytes=m.get("smem_bytes"), dynamic_smem_bytes=m.get("dynamic_smem_bytes"),
            spills=spills, valid=meta is not None,
        ))
    return out


def clear(pattern: str | None = None) -> int:
    """Remove entries matching `pattern` (all if None); returns the count.

    `pattern` is a glob on the config name, or a plain substring when it has
    no glob characters (what `cudadent42 cache clear --pattern` documents).

    With no pattern, failed builds and temp/trash folders older than an hour
    (abandoned by killed builders; younger ones may be live builds) go too.
    """
    n = 0
    for p in _entries():
        name = p.name.rsplit(".", 1)[0]
        if pattern is None or fnmatch.fnmatch(name, pattern) or (
            not any(c in pattern for c in "*?[") and pattern in name
        ):
            _discard(p)
            n += 1
    root = toolchain.cache_dir()
    if pattern is None and root.is_dir():
        shutil.rmtree(root / "failed", ignore_errors=True)
        for p in root.glob(".t*-*"):  # .tmp-* and .trash-*
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime > 3600:
                    shutil.rmtree(p, ignore_errors=True)
    return n


def cache_size_bytes() -> int:
    root = toolchain.cache_dir()
    return _tree_size(root) if root.is_dir() else 0
