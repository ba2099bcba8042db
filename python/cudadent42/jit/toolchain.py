"""Locate the CUDA toolchain, CUTLASS/CuTe headers and the project's CUDA sources.

Everything here is resolved lazily at call time (never at import) so that
`import cudadent42` works on machines without nvcc or a GPU, and so tests can
steer each lookup through environment variables.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

# Single source of truth for every environment variable the JIT layer reads;
# the README table and `cudadent42 info` print this dict.
ENV_VARS: dict[str, str] = {
    "CUDADENT42_CACHE_DIR": "Kernel cache folder (default ~/.cache/cudadent42).",
    "CUDADENT42_NVCC": "Path of the nvcc to use; must exist (overrides CUDA_HOME and PATH).",
    "CUDA_HOME": "CUDA toolkit root; $CUDA_HOME/bin/nvcc is tried after CUDADENT42_NVCC.",
    "CUDA_PATH": "Alternative name for CUDA_HOME.",
    "CUDADENT42_NVCC_FLAGS": "Extra nvcc flags (shell-split) appended to every build; part of the cache key.",
    "CUDADENT42_CUTLASS_DIR": "CUTLASS checkout root to use instead of the nvidia-cutlass wheel headers.",
    "CUDADENT42_ALLOW_UNCLEAN": "1 = accept kernels with register spills or serialized wgmma (experiments only).",
    "CUDADENT42_JIT_DEBUG": "1 = print nvcc command and ptxas summary per build and keep PTX/cubin in the entry.",
    "CUDADENT42_AUTOTUNE": "1 = tune an untuned problem class on first use and persist the winner.",
    "CUDADENT42_AUTOTUNE_POINTS": "Configs in that first-use sweep (default 8).",
    "CUDADENT42_AUTOTUNE_BUDGET_S": "Seconds of timing in that first-use sweep (default 120).",
    "CUDADENT42_NVTX": "1 = an NVTX range named after the config around every launch.",
}

MIN_NVCC = (12, 8)  # sm_90a wgmma needs 12.3; 12.8 is what the kernels are tested with

# Module-level so tests can point it somewhere that does not exist.
_DEFAULT_NVCC = "/usr/local/cuda/bin/nvcc"

_NVCC_MISSING = (
    "nvcc not found: install the CUDA toolkit >= 12.8 (e.g. `pip install nvidia-cuda-nvcc` "
    "or your distro's cuda-toolkit), or set CUDADENT42_NVCC / CUDA_HOME"
)
_CUTLASS_MISSING = (
    "CUTLASS/CuTe headers not found: pip install nvidia-cutlass==4.2.0.0, "
    "or set CUDADENT42_CUTLASS_DIR to a CUTLASS checkout"
)


class ToolchainError(RuntimeError):
    """A required tool or header set is missing; the message says how to get it."""


def _is_exe(p: str | os.PathLike) -> bool:
    return os.path.isfile(p) and os.access(p, os.X_OK)


def find_nvcc() -> str:
    env = os.environ.get("CUDADENT42_NVCC")
    if env:
        # An explicit override that is wrong must fail loudly rather than
        # silently fall back to some other nvcc.
        if not _is_exe(env):
            raise ToolchainError(
                f"CUDADENT42_NVCC={env!r} does not exist or is not executable; "
                "point it at an nvcc binary (CUDA >= 12.8) or unset it"
            )
        return env
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and _is_exe(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    if _is_exe(_DEFAULT_NVCC):
        return _DEFAULT_NVCC
    raise ToolchainError(_NVCC_MISSING)


@functools.lru_cache(maxsize=None)
def _nvcc_version_of(nvcc: str) -> str:
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise ToolchainError(f"cannot run {nvcc} --version ({e}); {_NVCC_MISSING}") from e
    text = out.stdout + out.stderr
    m = re.search(r"release (\d+)\.(\d+), V(\d+\.\d+\.\d+)", text) or re.search(
        r"release (\d+)\.(\d+)", text
    )
    if not m:
        raise ToolchainError(f"cannot parse `{nvcc} --version` output:\n{text.strip()}")
    major, minor = int(m.group(1)), int(m.group(2))
    version = m.group(3) if m.lastindex and m.lastindex >= 3 else f"{major}.{minor}"
    if (major, minor) < MIN_NVCC:
        raise ToolchainError(
            f"{nvcc} is CUDA {version}, but cudadent42 needs CUDA >= "
            f"{MIN_NVCC[0]}.{MIN_NVCC[1]} for sm_90a; {_NVCC_MISSING}"
        )
    return version


def nvcc_version(nvcc: str | None = None) -> str:
    """Full nvcc version ("13.0.88"); cached per nvcc path (running nvcc costs ~50 ms)."""
    return _nvcc_version_of(nvcc or find_nvcc())


def cutlass_include_dirs() -> list[str]:
    root = os.environ.get("CUDADENT42_CUTLASS_DIR")
    if root:
        if not os.path.isdir(os.path.join(root, "include", "cute")):
            raise ToolchainError(
                f"CUDADENT42_CUTLASS_DIR={root!r} has no include/cute; {_CUTLASS_MISSING}"
            )
        return [os.path.join(root, "include"), os.path.join(root, "tools", "util", "include")]
    # find_spec on a top-level name locates the package without executing it;
    # importing cutlass_library would pull in its heavy Python dependencies.
    try:
        spec = importlib.util.find_spec("cutlass_library")
    except (ImportError, ValueError):
        spec = None
    locs = list(spec.submodule_search_locations or []) if spec else []
    for loc in locs:
        inc = os.path.join(loc, "source", "include")
        if os.path.isdir(os.path.join(inc, "cute")):
            return [inc, os.path.join(loc, "source", "tools", "util", "include")]
    raise ToolchainError(_CUTLASS_MISSING)


def cutlass_version() -> str:
    header = Path(cutlass_include_dirs()[0]) / "cutlass" / "version.h"
    try:
        text = header.read_text()
    except OSError as e:
        raise ToolchainError(f"cannot read {header} ({e}); {_CUTLASS_MISSING}") from e
    parts = []
    for field in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(rf"#define\s+CUTLASS_{field}\s+(\d+)", text)
        if not m:
            raise ToolchainError(f"cannot parse CUTLASS_{field} from {header}")
        parts.append(m.group(1))
    return ".".join(parts)


def csrc_dir() -> Path:
    pkg = Path(__file__).resolve().parent.parent
    # An installed wheel carries csrc/ inside the package (see setup.py);
    # a source checkout has it at the repo root, two levels above the package.
    for cand in (pkg / "csrc", pkg.parent.parent / "csrc"):
        if cand.is_dir():
            return cand
    raise ToolchainError(
        f"CUDA sources (csrc/) not found next to {pkg} or at the repo root; "
        "reinstall cudadent42 (pip install .) or run from a full source checkout"
    )


_BASE_FLAGS = (
    "-gencode=arch=compute_90a,code=sm_90a",
    "-O3",
    "-DNDEBUG",
    "-std=c++17",
    "--expt-relaxed-constexpr",
    "-lineinfo",
    "-Xptxas=-v",  # the ptxas report is parsed into meta.json and the strict checks
    "-shared",
    "-Xcompiler",
    "-fPIC",
    "-Xcompiler",
    "-fvisibility=hidden",  # only symbols marked visibility("default") are exported
)


def nvcc_flags() -> list[str]:
    flags = list(_BASE_FLAGS)
    flags.append(f"-I{csrc_dir()}")
    flags += [f"-I{d}" for d in cutlass_include_dirs()]
    flags += shlex.split(os.environ.get("CUDADENT42_NVCC_FLAGS", ""))
    return flags


def _find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # The nvidia-cuda-cuobjdump / -nvdisasm wheels drop binaries in
    # site-packages/nvidia/cu13/bin (cu12 for the older wheels).
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    for loc in list(spec.submodule_search_locations or []) if spec else []:
        for cu in ("cu13", "cu12"):
            cand = os.path.join(loc, cu, "bin", name)
            if _is_exe(cand):
                return cand
    try:
        nvcc = find_nvcc()
    except ToolchainError:
        return None
    # nvcc may be a wrapper script in another folder; try both its folder
    # and the folder of the resolved binary.
    for d in {os.path.dirname(nvcc), os.path.dirname(os.path.realpath(nvcc))}:
        cand = os.path.join(d, name)
        if _is_exe(cand):
            return cand
    return None


def find_cuobjdump() -> str | None:
    return _find_tool("cuobjdump")


def find_nvdisasm() -> str | None:
    return _find_tool("nvdisasm")


def cache_dir() -> Path:
    env = os.environ.get("CUDADENT42_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cudadent42"
