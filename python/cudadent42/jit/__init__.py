"""JIT build layer: find the toolchain, build kernel configs with nvcc, cache them on disk.

Importing this package runs nothing: every tool lookup happens on first use.
"""
from .abi import AbiMismatchError, check_abi
from .cache import (
    CACHE_FORMAT,
    BuildError,
    BuildResult,
    LoadedKernel,
    build,
    build_one,
    cache_size_bytes,
    clear,
    digest,
    entry_dir,
    list_entries,
    load,
)
from .ptxas import parse_ptxas
from .sass import dump_sass, sass_stats
from .toolchain import (
    ENV_VARS,
    ToolchainError,
    cache_dir,
    csrc_dir,
    cutlass_include_dirs,
    cutlass_version,
    find_cuobjdump,
    find_nvcc,
    find_nvdisasm,
    nvcc_flags,
    nvcc_version,
)

__all__ = [
    "AbiMismatchError", "check_abi", "CACHE_FORMAT", "BuildError", "BuildResult", "LoadedKernel", "build", "build_one",
    "cache_size_bytes", "clear", "digest", "entry_dir", "list_entries", "load",
    "parse_ptxas", "dump_sass", "sass_stats", "ENV_VARS", "ToolchainError", "cache_dir",
    "csrc_dir", "cutlass_include_dirs", "cutlass_version", "find_cuobjdump", "find_nvcc",
    "find_nvdisasm", "nvcc_flags", "nvcc_version",
]
