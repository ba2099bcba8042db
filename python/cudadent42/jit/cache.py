"""Disk cache of JIT-built kernels (one shared library per kernel config).

Layout under cache_dir():
    <name>.<digest>/        finished entry: kernel.cu kernel.so build.log meta.json
    .tmp-<name>.<digest>-*/ build in progress (renamed into place atomically)
    .trash-*                a discarded entry on its way out (removed by the next
                            build or `cache clear`)
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
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .. import env
from . import proc, toolchain
from .includes import hash_closure
from .ptxas import parse_ptxas, summary

# Bump when the entry layout / meta schema / build recipe / key recipe changes
# so old entries are ignored instead of misread. 2: the key hashes the TU's
# include closure instead of all of csrc/; meta.json records the closure.
CACHE_FORMAT = 2

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


def _check_spec(spec) -> None:
    """A kernel config object: a str `name`, `key()` and `render()`. A config *name* is not one."""
    if isinstance(spec, str) or not (
        isinstance(getattr(spec, "name", None), str) and callable(getattr(spec, "key", None))
        and callable(getattr(spec, "render", None))
    ):
        given = f"the string {spec!r}" if isinstance(spec, str) else f"a {type(spec).__name__}"
        raise TypeError(
            f"jit expects a kernel config object (GemmConfig, AttnFwdConfig, AttnBwdConfig: a str name, "
            f"key() and render()), got {given}; for a config name use e.g. AttnFwdConfig.from_name(name)"
        )


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _relocatable_flags() -> list[str]:
    # The csrc/ and CUTLASS include directories enter the key by content
    # (the included csrc files, the CUTLASS version), not by where they live, so
    # a cache built in one checkout is valid in another with the same sources.
    own = {f"-I{toolchain.csrc_dir()}": "-I<csrc>"}
    own.update({f"-I{d}": f"-I<cutlass:{i}>" for i, d in enumerate(toolchain.cutlass_include_dirs())})
    return [own.get(f, f) for f in toolchain.nvcc_flags()]


def digest(spec) -> str:
    """Key of a config's cache entry: format, config key, generated source, flags, nvcc and
    CUTLASS versions, and the csrc/ files the source includes (jit/includes.py)."""
    _check_spec(spec)
    h = hashlib.sha256()
    source = spec.render()
    parts = (f"format={CACHE_FORMAT}", spec.key(), source, "\0".join(_relocatable_flags()),
             toolchain.nvcc_version(), toolchain.cutlass_version())
    for part in parts:
        h.update(part.encode() + b"\0\1")  # separator: no ambiguity between adjacent parts
    hash_closure(h, source, toolchain.csrc_dir())
    return h.hexdigest()[:16]


def entry_dir(spec) -> Path:
    _check_spec(spec)
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


def _remove(path: Path) -> None:
    """Remove a folder tree, or a file / link in a folder's place."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _discard(path: Path) -> None:
    # Rename first so the bad folder disappears from its name atomically; the
    # slow removal then cannot race with a builder renaming a fresh entry in.
    aside = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    _remove(aside)


def _remove_trash(root: Path) -> None:
    # A .trash-* folder is never read again; one can outlive _discard only when
    # its removal failed or the process died mid-way. A concurrent _discard
    # removing the same folder is harmless (both ignore what is gone).
    for p in root.glob(".trash-*"):
        _remove(p)


@contextlib.contextmanager
def _try_entry_lock(entry_name: str):
    """Yields True if no builder holds `entry_name`'s lock (held for the block), else False."""
    path = toolchain.cache_dir() / ".locks" / f"{entry_name}.lock"
    try:
        f = open(path, "a+")
    except OSError:  # no lock file: no builder ever locked it
        yield True
        return
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


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
    debug = env.get("CUDADENT42_JIT_DEBUG")
    allow_unclean = env.get("CUDADENT42_ALLOW_UNCLEAN")
    timeout = env.get("CUDADENT42_BUILD_TIMEOUT_S")
    nvcc = toolchain.find_nvcc()
    flags = toolchain.nvcc_flags()
    # -keep leaves .ptx/.cubin next to kernel.cu (cwd), so they travel with the entry.
    cmd = [nvcc, *flags, *(["-keep"] if debug else []), "-o", "kernel.so", "kernel.cu"]
    cmd_str = shlex.join(cmd)
    _remove_trash(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=root))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; entries may live in a shared cache
        source = spec.render()
        (tmp / "kernel.cu").write_text(source)
        if debug:
            print(f"[cudadent42.jit] {spec.name}: {cmd_str}", file=sys.stderr)
        t0 = time.monotonic()
        try:
            status, log = proc.run(cmd, cwd=tmp, timeout=timeout)
            timed_out = False
        except proc.ToolTimeout as e:
            status, log, timed_out = None, e.output, True
        seconds = time.monotonic() - t0
        (tmp / "build.log").write_text(f"$ {cmd_str}\n(exit status {status})\n{log}")
        p = parse_ptxas(log)
        if debug:
            print(f"[cudadent42.jit] {spec.name}: ptxas {summary(p)}", file=sys.stderr)
        reason, unclean = None, _unclean_reasons(p)
        if timed_out:
            reason = (f"nvcc ran past CUDADENT42_BUILD_TIMEOUT_S={timeout:g} s and was killed with its "
                      "process group; raise CUDADENT42_BUILD_TIMEOUT_S if the machine is just slow")
        elif status != 0 or not (tmp / "kernel.so").is_file():
            reason = f"nvcc exited with status {status}"
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
            includes=[f.as_posix() for f in hash_closure(hashlib.sha256(), source, toolchain.csrc_dir())],
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
    if meta and meta.get("unclean") and strict and not env.get("CUDADENT42_ALLOW_UNCLEAN"):
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
    _check_spec(spec)
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
# once instead of spending another nvcc run on a config known to fail - as long
# as the settings a build reads are unchanged (setting CUDADENT42_ALLOW_UNCLEAN=1
# after a refusal, as the message says, must be tried).
_FAILED: dict[tuple, BuildError] = {}
_BUILD_SETTINGS = ("CUDADENT42_ALLOW_UNCLEAN", "CUDADENT42_BUILD_TIMEOUT_S", "CUDADENT42_NVCC_FLAGS",
                   "CUDADENT42_NVCC", "CUDA_HOME", "CUDA_PATH", "CUDADENT42_CUTLASS_DIR", "CUDADENT42_CACHE_DIR")


def load(spec, *, strict: bool = True) -> LoadedKernel:
    # Keyed on key() only (not render()/digest) so the hot path does no
    # hashing and no disk access; a process sees one build per config.
    _check_spec(spec)
    k = (spec.name, spec.key())
    hit = _LOADED.get(k)
    if hit is not None:
        return hit
    failed_key = (*k, strict, tuple(env.raw(v) for v in _BUILD_SETTINGS))
    failed = _FAILED.get(failed_key)
    if failed is not None:
        raise failed
    try:
        path = build_one(spec, strict=strict)
    except BuildError as e:
        _FAILED[failed_key] = e
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

    Discarded entries (.trash-*) and temp folders of builds no process is
    running (.tmp-*: their entry's lock is free) go too, and with no pattern
    the failed builds as well.
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
    if root.is_dir():
        if pattern is None:
            _remove(root / "failed")
        _remove_trash(root)
        for p in root.glob(".tmp-*"):
            entry_name = p.name[len(".tmp-"):].rsplit("-", 1)[0]  # mkdtemp appends "-" + random
            with _try_entry_lock(entry_name) as free:
                if free:  # else a builder holds the lock: the folder may be its live build
                    _remove(p)
    return n


def cache_size_bytes() -> int:
    root = toolchain.cache_dir()
    return _tree_size(root) if root.is_dir() else 0
