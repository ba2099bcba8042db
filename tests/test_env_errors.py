"""Every environment variable: one row per bad value (the setting, the call that reads it, the
exception type, a fragment of the message), one row per accepted spelling. No GPU, no nvcc run."""
import math
import re
from pathlib import Path

import pytest

import cudadent42
from cudadent42 import env, runtime
from cudadent42.env import EnvError
from cudadent42.jit import toolchain
from cudadent42.jit.toolchain import ToolchainError
from cudadent42.tune import autotune

REPO = Path(__file__).resolve().parent.parent


def _tune():
    # The first-use autotuner of a GEMM problem; any bad setting raises before a sweep starts.
    return autotune.maybe_tune("gemm", "test-gpu", dict(dtype="bf16", m=256, n=256, k=256), dict(m=256, n=256, k=256))


# (variables set, call, exception type, message fragment)
BAD = [
    ({"CUDADENT42_AUTOTUNE": "maybe"}, autotune.enabled, EnvError, "accepted: 1/0, true/false, yes/no, on/off"),
    ({"CUDADENT42_AUTOTUNE": "2"}, autotune.enabled, EnvError, "CUDADENT42_AUTOTUNE='2'"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_POINTS": "0"}, _tune, EnvError, "an integer >= 1"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_POINTS": "-3"}, _tune, EnvError, "AUTOTUNE_POINTS='-3'"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_POINTS": "nan"}, _tune, EnvError, "AUTOTUNE_POINTS='nan'"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_POINTS": "inf"}, _tune, EnvError, "AUTOTUNE_POINTS='inf'"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_POINTS": "2.5"}, _tune, EnvError, "positive int"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_BUDGET_S": "nan"}, _tune, EnvError, "a finite number > 0"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_BUDGET_S": "0"}, _tune, EnvError, "AUTOTUNE_BUDGET_S='0'"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_BUDGET_S": "-1"}, _tune, EnvError, "AUTOTUNE_BUDGET_S='-1'"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_BUDGET_S": "inf"}, _tune, EnvError, "a finite number > 0"),
    ({"CUDADENT42_AUTOTUNE": "1", "CUDADENT42_AUTOTUNE_BUDGET_S": "2 min"}, _tune, EnvError, "positive float"),
    ({"CUDADENT42_CACHE_DIR": "~nosuchuser_cd42/x"}, toolchain.cache_dir, EnvError,
     "CUDADENT42_CACHE_DIR='~nosuchuser_cd42/x'"),
    ({"CUDADENT42_NVCC_FLAGS": "-DFOO='unclosed"}, toolchain.nvcc_flags, EnvError,
     "CUDADENT42_NVCC_FLAGS=\"-DFOO='unclosed\" is not a valid flags value"),
    ({"CUDADENT42_NVCC": "/nonexistent/nvcc"}, toolchain.find_nvcc, ToolchainError,
     "CUDADENT42_NVCC='/nonexistent/nvcc' does not exist"),
    ({"CUDADENT42_NVCC": "~nosuchuser_cd42/nvcc"}, toolchain.find_nvcc, EnvError, "CUDADENT42_NVCC="),
    ({"CUDA_HOME": "/nonexistent"}, toolchain.find_nvcc, ToolchainError, "CUDA_HOME='/nonexistent' does not exist"),
    ({"CUDA_HOME": "{tmp}"}, toolchain.find_nvcc, ToolchainError, "has no executable bin/nvcc"),
    ({"CUDA_PATH": "/nonexistent"}, toolchain.find_nvcc, ToolchainError, "CUDA_PATH='/nonexistent' does not exist"),
    ({"CUDA_HOME": "~nosuchuser_cd42"}, toolchain.find_nvcc, EnvError, "CUDA_HOME='~nosuchuser_cd42'"),
    ({"CUDADENT42_CUTLASS_DIR": "/nonexistent"}, toolchain.cutlass_include_dirs, ToolchainError,
     "CUDADENT42_CUTLASS_DIR='/nonexistent' has no include/cute"),
    ({"CUDADENT42_CUTLASS_DIR": "~nosuchuser_cd42"}, toolchain.cutlass_include_dirs, EnvError, "the user must exist"),
    ({"CUDADENT42_BUILD_TIMEOUT_S": "0"}, lambda: env.get("CUDADENT42_BUILD_TIMEOUT_S"), EnvError,
     "CUDADENT42_BUILD_TIMEOUT_S='0'"),
    ({"CUDADENT42_BUILD_TIMEOUT_S": "nan"}, lambda: env.get("CUDADENT42_BUILD_TIMEOUT_S"), EnvError, "finite"),
    ({"CUDADENT42_BUILD_TIMEOUT_S": "15m"}, lambda: env.get("CUDADENT42_BUILD_TIMEOUT_S"), EnvError, "finite"),
    ({"CUDADENT42_ALLOW_UNCLEAN": "please"}, lambda: env.get("CUDADENT42_ALLOW_UNCLEAN"), EnvError,
     "CUDADENT42_ALLOW_UNCLEAN='please'"),
    ({"CUDADENT42_JIT_DEBUG": "verbose"}, lambda: env.get("CUDADENT42_JIT_DEBUG"), EnvError, "JIT_DEBUG='verbose'"),
    ({"CUDADENT42_NVTX": "y"}, lambda: runtime.kernel_range("cfg"), EnvError, "CUDADENT42_NVTX='y'"),
]

_ALL = [v for v in env.VARS]


@pytest.fixture
def clean_env(monkeypatch):
    for var in _ALL:
        monkeypatch.delenv(var, raising=False)
    autotune.forget()
    yield monkeypatch
    autotune.forget()


@pytest.mark.parametrize("settings,call,exc,fragment", BAD, ids=[
    "-".join(f"{k.replace('CUDADENT42_', '')}={v}" for k, v in row[0].items()) for row in BAD])
def test_bad_setting(clean_env, tmp_path, settings, call, exc, fragment):
    for var, value in settings.items():
        clean_env.setenv(var, value.replace("{tmp}", str(tmp_path)))
    with pytest.raises(exc) as ei:
        call()
    msg = str(ei.value)
    assert fragment in msg, msg
    if exc is EnvError:  # names the variable, the value and what is accepted
        bad_var = next(v for v in reversed(list(settings)) if v in msg)
        assert repr(settings[bad_var]) in msg and "accepted:" in msg, msg
        assert isinstance(ei.value, ValueError) and cudadent42.EnvError is EnvError


# (variable, text, parsed value)
GOOD = [
    *[("CUDADENT42_AUTOTUNE", t, True) for t in ("1", "true", "TRUE", "yes", "On", " on ")],
    *[("CUDADENT42_AUTOTUNE", t, False) for t in ("0", "false", "False", "no", "off", "OFF", "", "  ")],
    ("CUDADENT42_AUTOTUNE_POINTS", "3", 3),
    ("CUDADENT42_AUTOTUNE_POINTS", "", 8),
    ("CUDADENT42_AUTOTUNE_BUDGET_S", "0.5", 0.5),
    ("CUDADENT42_AUTOTUNE_BUDGET_S", "1e3", 1000.0),
    ("CUDADENT42_BUILD_TIMEOUT_S", "", 900.0),
    ("CUDADENT42_NVCC_FLAGS", "-DA=1 '-DB=x y'", ("-DA=1", "-DB=x y")),
    ("CUDADENT42_NVCC_FLAGS", "", ()),
    ("CUDADENT42_CACHE_DIR", "", None),
]


@pytest.mark.parametrize("var,text,value", GOOD)
def test_accepted_value(clean_env, var, text, value):
    clean_env.setenv(var, text)
    assert env.get(var) == value


def test_autotune_off_spellings_mean_off(clean_env):
    for text in ("false", "off", "no", "0"):
        clean_env.setenv("CUDADENT42_AUTOTUNE", text)
        assert autotune.enabled() is False and _tune() is None


def test_path_expands_home(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path))
    clean_env.setenv("CUDADENT42_CACHE_DIR", "~/kc")
    assert toolchain.cache_dir() == tmp_path / "kc"


def test_cuda_home_bin_nvcc_used(clean_env, tmp_path):
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.parent.mkdir()
    nvcc.write_text("#!/bin/sh\n")
    nvcc.chmod(0o755)
    clean_env.setenv("CUDA_HOME", str(tmp_path))
    clean_env.setenv("CUDA_PATH", "/nonexistent")  # read only when CUDA_HOME is unset
    assert toolchain.find_nvcc() == str(nvcc)


def test_every_variable_read_goes_through_env():
    """Each CUDADENT42_* name in the package is in env.VARS, and only env.py touches os.environ
    for them (or for CUDA_HOME / CUDA_PATH)."""
    pkg = REPO / "python" / "cudadent42"
    used, direct = set(), []
    for path in pkg.rglob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r"CUDADENT42_[A-Z0-9_]*[A-Z0-9]", text))
        if path.name != "env.py":
            direct += [f"{path.relative_to(pkg)}: {m}" for m in re.findall(
                r"(?:environ(?:\.get)?[\[(]|getenv\()\s*['\"](?:CUDADENT42_\w+|CUDA_HOME|CUDA_PATH)", text)]
    assert used <= set(env.VARS), sorted(used - set(env.VARS))
    assert not direct, direct
    assert set(toolchain.ENV_VARS) == set(env.VARS)


def test_readme_table_is_the_env_table():
    readme = (REPO / "README.md").read_text()
    assert env.markdown_table() in readme, "README's Environment variables table differs from env.markdown_table()"


def test_defaults_are_valid_values():
    for var in env.VARS.values():
        if var.kind is env.POS_FLOAT:
            assert math.isfinite(var.default) and var.default > 0
        if var.kind is env.POS_INT:
            assert var.default >= 1
