"""Toolchain discovery: nvcc, CUTLASS headers, csrc, flags, env vars. No GPU needed."""
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from cudadent42.jit import toolchain
from cudadent42.jit.toolchain import ToolchainError


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def no_nvcc_env(monkeypatch):
    for var in ("CUDADENT42_NVCC", "CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_nvcc_env_override_must_exist(no_nvcc_env):
    no_nvcc_env.setenv("CUDADENT42_NVCC", "/nonexistent/nvcc")
    with pytest.raises(ToolchainError, match="CUDADENT42_NVCC"):
        toolchain.find_nvcc()


def test_nvcc_missing_says_how_to_install(no_nvcc_env, tmp_path):
    no_nvcc_env.setenv("PATH", str(tmp_path / "empty"))
    no_nvcc_env.setattr(toolchain, "_DEFAULT_NVCC", str(tmp_path / "no" / "nvcc"))
    with pytest.raises(ToolchainError) as ei:
        toolchain.find_nvcc()
    msg = str(ei.value)
    assert "nvcc not found" in msg and "pip install nvidia-cuda-nvcc" in msg
    assert "CUDADENT42_NVCC" in msg and "CUDA_HOME" in msg


def test_nvcc_search_order(no_nvcc_env, tmp_path):
    home = _script(tmp_path / "cuda" / "bin" / "nvcc", "exit 0")
    env = _script(tmp_path / "override" / "nvcc", "exit 0")
    no_nvcc_env.setenv("CUDA_PATH", str(tmp_path / "cuda"))
    assert toolchain.find_nvcc() == str(home)
    # A set but broken CUDA_HOME is an error naming it (it used to be skipped silently).
    no_nvcc_env.setenv("CUDA_HOME", str(tmp_path / "missing"))
    with pytest.raises(ToolchainError, match="CUDA_HOME=.*missing.* does not exist"):
        toolchain.find_nvcc()
    no_nvcc_env.setenv("CUDADENT42_NVCC", str(env))  # the explicit nvcc wins over CUDA_HOME
    assert toolchain.find_nvcc() == str(env)


def test_nvcc_version_real():
    v = toolchain.nvcc_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", v)
    assert tuple(map(int, v.split(".")[:2])) >= (12, 8)


def test_nvcc_version_too_old(tmp_path):
    old = _script(
        tmp_path / "nvcc",
        'echo "Cuda compilation tools, release 12.4, V12.4.131"',
    )
    with pytest.raises(ToolchainError, match="12.8"):
        toolchain.nvcc_version(str(old))


def test_nvcc_version_parse_fake(tmp_path):
    new = _script(tmp_path / "nvcc", 'echo "Cuda compilation tools, release 12.9, V12.9.41"')
    assert toolchain.nvcc_version(str(new)) == "12.9.41"


def test_cutlass_from_wheel(monkeypatch):
    monkeypatch.delenv("CUDADENT42_CUTLASS_DIR", raising=False)
    imported_before = "cutlass_library" in sys.modules  # another test may have imported it
    inc, util = toolchain.cutlass_include_dirs()
    assert (Path(inc) / "cute").is_dir() and (Path(inc) / "cutlass" / "version.h").is_file()
    assert util.endswith(os.path.join("tools", "util", "include"))
    assert re.fullmatch(r"\d+\.\d+\.\d+", toolchain.cutlass_version())
    # find_spec must locate the wheel without importing it (heavy deps).
    assert imported_before or "cutlass_library" not in sys.modules


def test_cutlass_env_checkout(monkeypatch, tmp_path):
    (tmp_path / "include" / "cute").mkdir(parents=True)
    (tmp_path / "include" / "cutlass").mkdir()
    (tmp_path / "include" / "cutlass" / "version.h").write_text(
        "#define CUTLASS_MAJOR 9\n#define CUTLASS_MINOR 8\n#define CUTLASS_PATCH 7\n"
    )
    monkeypatch.setenv("CUDADENT42_CUTLASS_DIR", str(tmp_path))
    assert toolchain.cutlass_include_dirs() == [
        str(tmp_path / "include"), str(tmp_path / "tools" / "util" / "include")
    ]
    assert toolchain.cutlass_version() == "9.8.7"
    monkeypatch.setenv("CUDADENT42_CUTLASS_DIR", str(tmp_path / "nope"))
    with pytest.raises(ToolchainError, match="CUDADENT42_CUTLASS_DIR"):
        toolchain.cutlass_include_dirs()


def test_cutlass_missing(monkeypatch):
    monkeypatch.delenv("CUDADENT42_CUTLASS_DIR", raising=False)
    monkeypatch.setattr(toolchain.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ToolchainError, match="pip install nvidia-cutlass==4.2.0.0"):
        toolchain.cutlass_include_dirs()


def test_csrc_dir_is_repo_csrc():
    d = toolchain.csrc_dir()
    assert d.is_dir() and d.name == "csrc"


def test_nvcc_flags(monkeypatch):
    monkeypatch.delenv("CUDADENT42_NVCC_FLAGS", raising=False)
    flags = toolchain.nvcc_flags()
    base = [
        "-gencode=arch=compute_90a,code=sm_90a", "-O3", "-DNDEBUG", "-std=c++17",
        "--expt-relaxed-constexpr", "-lineinfo", "-Xptxas=-v", "-shared", "-Xcompiler",
        "-fPIC", "-Xcompiler", "-fvisibility=hidden",
    ]
    assert flags[: len(base)] == base
    assert f"-I{toolchain.csrc_dir()}" in flags
    for d in toolchain.cutlass_include_dirs():
        assert f"-I{d}" in flags
    monkeypatch.setenv("CUDADENT42_NVCC_FLAGS", "-DFOO=1 '-DBAR=a b'")
    assert toolchain.nvcc_flags()[-2:] == ["-DFOO=1", "-DBAR=a b"]


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDADENT42_CACHE_DIR", str(tmp_path / "c"))
    assert toolchain.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CUDADENT42_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert toolchain.cache_dir() == tmp_path / ".cache" / "cudadent42"


def test_binutils_found_without_path(monkeypatch, tmp_path):
    # The nvidia-cuda-cuobjdump/-nvdisasm wheels are installed for the tests;
    # they must be found through site-packages even with an empty PATH.
    monkeypatch.setenv("PATH", str(tmp_path))
    for fn in (toolchain.find_cuobjdump, toolchain.find_nvdisasm):
        p = fn()
        if p is None:
            pytest.skip("cuobjdump/nvdisasm wheels not installed")
        assert os.access(p, os.X_OK)


def test_env_vars_documented():
    # Every CUDADENT42_* variable read anywhere in the JIT layer must be in
    # ENV_VARS, because the README table and `cudadent42 info` print from it.
    src = "".join(p.read_text() for p in Path(toolchain.__file__).parent.glob("*.py"))
    used = set(re.findall(r"CUDADENT42_[A-Z_]+[A-Z]", src))
    assert used <= set(toolchain.ENV_VARS), used - set(toolchain.ENV_VARS)
    assert all(isinstance(v, str) and v for v in toolchain.ENV_VARS.values())
