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
import shutil
from pathlib import Path

from .. import env
from . import proc

# Name -> meaning of every environment variable (cudadent42.env.VARS is the
# table with types and defaults); `cudadent42 info` prints this dict.
ENV_VARS: dict[str, str] = {name: var.meaning for name, var in env.VARS.items()}

MIN_NVCC = (12, 8)  # sm_90a wgmma needs 12.3; 12.8 is what the kernels are tested with

# Module-level so tests can point it somewhere that does not exist.
_DEFAULT_NVCC = "/usr/local/cuda/bin/nvcc"
# `nvcc --version` answers in ~50 ms; a wrapper or network filesystem that
# hangs must not hang the first kernel call forever.
VERSION_TIMEOUT_S = 60.0

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
    """CUDADENT42_NVCC, else $CUDA_HOME/bin/nvcc (or $CUDA_PATH/...), else nvcc on PATH,
    else /usr/local/cuda/bin/nvcc. A variable that is set but wrong is an error, never skipped."""
    override = env.get("CUDADENT42_NVCC")
    if override is not None:
        if not _is_exe(override):
            raise ToolchainError(
                f"CUDADENT42_NVCC={env.raw('CUDADENT42_NVCC')!r} does not exist or is not executable; "
                "point it at an nvcc binary (CUDA >= 12.8) or unset it"
            )
        return str(override)
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = env.get(var)
        if root is None:
            continue
        nvcc = root / "bin" / "nvcc"
        if not _is_exe(nvcc):
            what = "does not exist" if not root.is_dir() else "has no executable bin/nvcc"
            raise ToolchainError(
                f"{var}={env.raw(var)!r} {what}; point it at a CUDA toolkit root (>= 12.8, "
                "e.g. /usr/local/cuda) or unset it to use nvcc from PATH"
            )
        return str(nvcc)
    found = shutil.which("nvcc")
    if found:
        return found
    if _is_exe(_DEFAULT_NVCC):
        return _DEFAULT_NVCC
    raise ToolchainError(_NVCC_MISSING)


@functools.lru_cache(maxsize=None)
def _nvcc_version_of(nvcc: str) -> str:
    try:
        status, text = proc.run([nvcc, "--version"], timeout=VERSION_TIMEOUT_S)
    except proc.ToolTimeout as e:
        raise ToolchainError(
            f"`{nvcc} --version` did not answer within {e.seconds:g} s (killed); "
            f"check that nvcc runs, or point CUDADENT42_NVCC at a working one"
        ) from None
    except OSError as e:
        raise ToolchainError(f"cannot run {nvcc} --version ({e}); {_NVCC_MISSING}") from e
    m = re.search(r"release (\d+)\.(\d+), V(\d+\.\d+\.\d+)", text) or re.search(
        r"release (\d+)\.(\d+)", text
    )
    if not m:
        raise ToolchainError(f"cannot parse `{nvcc} --version` output (exit status {status}):\n{text.strip()}")
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
    root = env.get("CUDADENT42_CUTLASS_DIR")
    if root is not None:
        root = str(root)
        if not os.path.isdir(os.path.join(root, "include", "cute")):
            raise ToolchainError(
                f"CUDADENT42_CUTLASS_DIR={env.raw('CUDADENT42_CUTLASS_DIR')!r} has no include/cute; "
                f"{_CUTLASS_MISSING}"
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
    flags += env.get("CUDADENT42_NVCC_FLAGS")
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
    root = env.get("CUDADENT42_CACHE_DIR")
    return root if root is not None else Path.home() / ".cache" / "cudadent42"
