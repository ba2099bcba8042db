"""JIT robustness: hung tools, build timeouts, nvcc outliving its parent, settings changed after a
failure, leftovers in the cache folder, wrong argument types. Real nvcc runs of tiny probes."""
import fcntl
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cudadent42.jit import BuildError, ToolchainError, build_one, cache, clear, digest, entry_dir, load, toolchain
from test_jit_cache import SPILL, Spec

pytestmark = pytest.mark.compile
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cdir(monkeypatch, tmp_path):
    for var in ("CUDADENT42_ALLOW_UNCLEAN", "CUDADENT42_JIT_DEBUG", "CUDADENT42_NVCC_FLAGS",
                "CUDADENT42_BUILD_TIMEOUT_S"):
        monkeypatch.delenv(var, raising=False)
    d = tmp_path / "cache"
    monkeypatch.setenv("CUDADENT42_CACHE_DIR", str(d))
    cache._LOADED.clear()
    cache._FAILED.clear()
    yield d
    cache._LOADED.clear()
    cache._FAILED.clear()


def _exe(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _hung_nvcc(tmp_path: Path) -> tuple[Path, Path]:
    """An nvcc whose compile hangs in a child (as cicc would), writing '<its pid> <child pid>' first;
    it compiles for real once the file `tmp_path/unhang` exists."""
    real = toolchain.find_nvcc()
    pids = tmp_path / "pids"
    script = _exe(tmp_path / "hung" / "nvcc", textwrap.dedent(f"""\
        case " $* " in *" --version "*) exec "{real}" "$@";; esac
        [ -e "{tmp_path / 'unhang'}" ] && exec "{real}" "$@"
        sleep 300 &
        echo "$$ $!" > "{pids}"
        wait"""))
    return script, pids


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie (re-parented to an init that may not reap at once)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_gone(pids, seconds=10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _read_pids(path: Path, seconds=30.0) -> list[int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().split()) == 2:
            return [int(x) for x in path.read_text().split()]
        time.sleep(0.05)
    raise AssertionError(f"the fake nvcc never started ({path} not written)")


def test_nvcc_version_that_hangs_is_a_toolchain_error(monkeypatch, tmp_path):
    pids = tmp_path / "pids"
    fake = _exe(tmp_path / "nvcc", f'sleep 300 & echo "$$ $!" > "{pids}"; wait')
    monkeypatch.setattr(toolchain, "VERSION_TIMEOUT_S", 0.5)
    t0 = time.monotonic()
    with pytest.raises(ToolchainError, match=r"--version` did not answer within 0.5 s"):
        toolchain.nvcc_version(str(fake))
    assert time.monotonic() - t0 < 10
    assert _wait_gone(_read_pids(pids)), "the hung nvcc --version (or its child) survived"


def test_build_timeout_kills_the_process_group_and_releases_the_lock(cdir, monkeypatch, tmp_path):
    script, pids = _hung_nvcc(tmp_path)
    monkeypatch.setenv("CUDADENT42_NVCC", str(script))
    monkeypatch.setenv("CUDADENT42_BUILD_TIMEOUT_S", "1.5")
    t0 = time.monotonic()
    with pytest.raises(BuildError) as ei:
        build_one(Spec())
    assert time.monotonic() - t0 < 30
    msg = str(ei.value)
    assert "'probe'" in msg and "CUDADENT42_BUILD_TIMEOUT_S=1.5 s" in msg and "killed" in msg
    assert _wait_gone(_read_pids(pids)), "nvcc or its child outlived the timeout"
    entry = entry_dir(Spec()).name
    with open(cdir / ".locks" / f"{entry}.lock") as f:  # released: a non-blocking lock succeeds
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not list(cdir.glob(".tmp-*")) and (cdir / "failed" / entry / "build.log").is_file()
    (tmp_path / "unhang").touch()
    assert build_one(Spec()).is_dir()


def test_load_retries_when_build_timeout_changes(cdir, monkeypatch, tmp_path):
    script, pids = _hung_nvcc(tmp_path)
    monkeypatch.setenv("CUDADENT42_NVCC", str(script))
    monkeypatch.setenv("CUDADENT42_BUILD_TIMEOUT_S", "1")
    with pytest.raises(BuildError, match="CUDADENT42_BUILD_TIMEOUT_S"):
        load(Spec())
    pids.unlink()
    (tmp_path / "unhang").touch()
    with pytest.raises(BuildError, match="CUDADENT42_BUILD_TIMEOUT_S"):
        load(Spec())  # same settings: the remembered failure, no nvcc run
    assert not pids.exists()
    monkeypatch.setenv("CUDADENT42_BUILD_TIMEOUT_S", "600")
    assert load(Spec()).meta["name"] == "probe"


_KILLED_PARENT = """
import sys
from cudadent42.jit import build_one
sys.path.insert(0, {tests!r})
from test_jit_cache import Spec
build_one(Spec())
"""


def test_nvcc_dies_with_a_killed_python_parent(cdir, tmp_path):
    script, pids = _hung_nvcc(tmp_path)
    env = dict(os.environ, CUDADENT42_NVCC=str(script), CUDADENT42_CACHE_DIR=str(cdir),
               PYTHONPATH=str(REPO / "python"))
    parent = subprocess.Popen([sys.executable, "-c", _KILLED_PARENT.format(tests=str(REPO / "tests"))], env=env)
    try:
        nvcc_pids = _read_pids(pids, seconds=60)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait_gone(nvcc_pids), "nvcc (or its child) kept running after its Python parent was killed"


def test_allow_unclean_set_after_a_strict_failure_is_honoured(cdir, monkeypatch):
    s = Spec(name="spill", src=SPILL, key="spill")
    with pytest.raises(BuildError, match="CUDADENT42_ALLOW_UNCLEAN=1"):
        load(s)
    with pytest.raises(BuildError):  # unchanged settings: the remembered failure, no new nvcc run
        load(s)
    monkeypatch.setenv("CUDADENT42_ALLOW_UNCLEAN", "1")
    k = load(s)
    assert k.meta["unclean"] and k.meta["allow_unclean"] is True


def test_entry_replaced_by_a_file_leaves_no_trash(cdir):
    p = build_one(Spec())
    shutil.rmtree(p)
    p.write_text("not a folder")
    assert build_one(Spec()) == p and p.is_dir()
    assert not list(cdir.glob(".trash-*"))


def test_clear_removes_trash_and_stale_tmp_but_not_a_live_build(cdir):
    build_one(Spec())
    (cdir / ".trash-probe.0123456789abcdef-deadbeef").mkdir()
    (cdir / ".trash-old.0123456789abcdef-cafecafe").write_text("a file moved aside")
    stale = cdir / ".tmp-probe.0123456789abcdef-abc123"
    stale.mkdir()
    live = cdir / ".tmp-other.fedcba9876543210-xyz789"
    live.mkdir()
    with cache._entry_lock("other.fedcba9876543210"):  # a builder of `other` at work right now
        assert clear("nothing-matches") == 0
        left = sorted(p.name for p in cdir.iterdir() if p.name.startswith("."))
    assert left == [".locks", live.name], left


def test_build_removes_stale_trash(cdir):
    cdir.mkdir(parents=True)
    (cdir / ".trash-x.0123456789abcdef-00000000").mkdir()
    build_one(Spec())
    assert not list(cdir.glob(".trash-*"))


# (call, exception type, message fragment): what the jit entry points accept.
API = [
    (lambda: load("attn_fwd_bf16_hd128_m128_n128_st2_wg2_causal"), TypeError,
     "got the string 'attn_fwd_bf16_hd128_m128_n128_st2_wg2_causal'"),
    (lambda: load("gemm_bf16"), TypeError, "from_name"),
    (lambda: load(42), TypeError, "got a int"),
    (lambda: build_one("gemm_bf16"), TypeError, "kernel config object"),
    (lambda: digest(None), TypeError, "got a NoneType"),
    (lambda: entry_dir(Spec(name="../evil")), ValueError, "not filesystem-safe"),
]


@pytest.mark.parametrize("call,exc,fragment", API, ids=range(len(API)))
def test_api_rejects_wrong_arguments(cdir, call, exc, fragment):
    with pytest.raises(exc) as ei:
        call()
    assert fragment in str(ei.value), str(ei.value)
