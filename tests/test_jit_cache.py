"""Disk cache behaviour with real nvcc builds of tiny kernels (no GPU needed).

Each build of the probe spec takes ~1 s; nvcc invocations are counted with a
wrapper script set as CUDADENT42_NVCC that appends to a marker file.
"""
import ctypes
import json
import multiprocessing as mp
import os
import shutil
import stat
import time

import pytest

from cudadent42.jit import cache, toolchain
from cudadent42.jit import (
    BuildError, ToolchainError, build, build_one, cache_size_bytes, clear, digest, entry_dir,
    list_entries, load,
)

pytestmark = pytest.mark.compile

PROBE = """\
extern "C" __attribute__((visibility("default"))) int cd42_probe(int x) { return x + 1; }
__global__ void cd42_noop(float* p) { if (p) p[threadIdx.x] += 1.0f; }
"""

# 64 live floats under a 32-register cap (1024 threads x 2 blocks) -> real spills.
SPILL = """\
__global__ void __launch_bounds__(1024, 2) spill_kernel(float* out, const float* in, int n) {
  float v[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) v[i] = in[i * n + threadIdx.x];
  for (int k = 0; k < n; ++k) {
#pragma unroll
    for (int i = 0; i < 64; ++i) v[i] = v[i] * v[(i + 1) & 63] + in[k];
  }
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i) acc += v[i];
  out[threadIdx.x] = acc;
}
"""

# An accumulator rewritten by a non-wgmma instruction inside the pipeline:
# ptxas serializes the wgmma (C7511 on CUDA 13).
WGMMA_SERIALIZED = """\
#include <cstdint>
__global__ void wg_kernel(float* out, uint64_t da, uint64_t db, int n) {
  float d[4] = {0, 0, 0, 0};
  for (int k = 0; k < n; ++k) {
    asm volatile("wgmma.fence.sync.aligned;\\n");
    asm volatile("{\\nwgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3}, %4, %5, 1, 1, 1, 0, 0;\\n}\\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "l"(da + k), "l"(db));
    d[0] = d[0] * out[k];
    asm volatile("wgmma.commit_group.sync.aligned;\\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;\\n" ::: "memory");
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;\\n" ::: "memory");
  out[threadIdx.x] = d[0] + d[1] + d[2] + d[3];
}
"""

C7510_LINE = (
    "ptxas warning : (C7510) Potential Performance Loss: wgmma.mma_async instructions are "
    "serialized due to the presence of Extern calls in the function '_Z9cd42_noopPf'"
)


class Spec:
    def __init__(self, name="probe", src=PROBE, key="probe-v1"):
        self.name, self.src, self._key = name, src, key

    def render(self):
        return self.src

    def key(self):
        return self._key


@pytest.fixture
def cdir(monkeypatch, tmp_path):
    for var in ("CUDADENT42_ALLOW_UNCLEAN", "CUDADENT42_JIT_DEBUG", "CUDADENT42_NVCC_FLAGS"):
        monkeypatch.delenv(var, raising=False)
    d = tmp_path / "cache"
    monkeypatch.setenv("CUDADENT42_CACHE_DIR", str(d))
    cache._LOADED.clear()
    yield d
    cache._LOADED.clear()


def _wrapper(tmp_path, monkeypatch, extra="", sleep=0):
    """nvcc wrapper that logs each real compile (not --version) to a marker file."""
    real = toolchain.find_nvcc()
    marker = tmp_path / "nvcc_runs"
    script = tmp_path / "bin" / "nvcc"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" --version "*) exec "{real}" "$@";; esac\n'
        f'echo run >> "{marker}"\n'
        f"sleep {sleep}\n"
        f'"{real}" "$@"; rc=$?\n'
        f"{extra}\n"
        "exit $rc\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CUDADENT42_NVCC", str(script))
    return lambda: len(marker.read_text().splitlines()) if marker.exists() else 0


def test_entry_dir_naming(cdir):
    s = Spec()
    d = digest(s)
    assert len(d) == 16 and all(c in "0123456789abcdef" for c in d)
    assert entry_dir(s) == cdir / f"probe.{d}"
    with pytest.raises(ValueError):
        entry_dir(Spec(name="../evil"))


def test_digest_inputs(cdir, monkeypatch, tmp_path):
    base = digest(Spec())
    assert digest(Spec()) == base  # stable
    assert digest(Spec(key="probe-v2")) != base
    assert digest(Spec(src=PROBE + "// changed\n")) != base
    monkeypatch.setenv("CUDADENT42_NVCC_FLAGS", "-DCD42_EXTRA=1")
    assert digest(Spec()) != base
    monkeypatch.delenv("CUDADENT42_NVCC_FLAGS")
    # The csrc/ files the source includes are part of the key (whether they
    # exist decides what nvcc reads); other csrc/ files are not.
    fake_csrc = tmp_path / "csrc"
    (fake_csrc / "cute").mkdir(parents=True)
    monkeypatch.setattr(toolchain, "csrc_dir", lambda: fake_csrc)
    including = Spec(src='#include "cute/tile.cuh"\n' + PROBE)
    d0 = digest(including)
    (fake_csrc / "cute" / "tile.cuh").write_text("#pragma once\n")
    d1 = digest(including)
    (fake_csrc / "cute" / "tile.cuh").write_text("#pragma once\n// v2\n")
    d2 = digest(including)
    assert len({d0, d1, d2}) == 3
    plain = digest(Spec())
    (fake_csrc / "cute" / "other.cuh").write_text("// not included\n")
    assert digest(Spec()) == plain and digest(including) == d2
    monkeypatch.setattr(cache, "CACHE_FORMAT", cache.CACHE_FORMAT + 1)
    assert digest(including) != d2


def test_load_calls_probe_and_records_meta(cdir):
    k = load(Spec())
    f = k.fn("cd42_probe", ctypes.c_int, [ctypes.c_int])
    assert f(41) == 42 and f(-1) == 0
    assert k.fn("cd42_probe", ctypes.c_int, [ctypes.c_int]) is f  # cached
    m = k.meta
    assert m["name"] == "probe" and m["key"] == "probe-v1" and m["digest"] == k.dir.name.split(".")[1]
    assert m["nvcc_version"] == toolchain.nvcc_version() and m["cutlass_version"]
    assert m["includes"] == [] and m["cache_format"] == cache.CACHE_FORMAT  # the probe includes no csrc/ file
    assert m["registers"] > 0 and m["spill_stores"] == 0 and not m["serialized"]
    assert m["build_seconds"] > 0 and m["created"] <= time.time()
    assert sorted(p.name for p in k.dir.iterdir()) == ["build.log", "kernel.cu", "kernel.so", "meta.json"]
    assert "-Xptxas=-v" in (k.dir / "build.log").read_text().splitlines()[0]


def test_miss_then_hit(cdir, tmp_path, monkeypatch):
    runs = _wrapper(tmp_path, monkeypatch)
    p1, cached1 = cache._build_one(Spec(), True)
    assert runs() == 1 and not cached1
    p2, cached2 = cache._build_one(Spec(), True)
    assert p2 == p1 and cached2 and runs() == 1
    cache._LOADED.clear()
    assert load(Spec()).fn("cd42_probe", ctypes.c_int, [ctypes.c_int])(1) == 2
    assert runs() == 1


def test_inprocess_cache_touches_no_disk(cdir, monkeypatch):
    k1 = load(Spec())
    shutil.rmtree(k1.dir)

    def boom(*a, **k):
        raise AssertionError("disk/hash access on an in-process hit")

    monkeypatch.setattr(cache, "digest", boom)
    monkeypatch.setattr(toolchain, "cache_dir", boom)
    k2 = load(Spec())
    assert k2 is k1
    assert k2.fn("cd42_probe", ctypes.c_int, [ctypes.c_int])(9) == 10


def test_atomic_no_tmp_left_and_stale_tmp_harmless(cdir):
    stale = cdir / ".tmp-probe.0123456789abcdef-zzzz"
    stale.mkdir(parents=True)
    (stale / "kernel.so").write_bytes(b"half written")
    p = build_one(Spec())
    assert [x.name for x in cdir.glob(".tmp-*")] == [stale.name]
    assert [e["name"] for e in list_entries()] == ["probe"] and list_entries()[0]["valid"]
    old = time.time() - 7200  # abandoned by a killed builder long ago
    os.utime(stale, (old, old))
    assert clear() == 1
    assert not stale.exists() and not p.exists()


@pytest.mark.parametrize("damage", ["truncate_so", "delete_so", "delete_meta", "garbage_meta"])
def test_corruption_is_detected_and_rebuilt(cdir, tmp_path, monkeypatch, damage):
    runs = _wrapper(tmp_path, monkeypatch)
    p = build_one(Spec())
    so, meta = p / "kernel.so", p / "meta.json"
    if damage == "truncate_so":
        so.write_bytes(so.read_bytes()[:1000])
    elif damage == "delete_so":
        so.unlink()
    elif damage == "delete_meta":
        meta.unlink()
    else:
        meta.write_text("{not json")
    assert not list_entries()[0]["valid"]
    assert build_one(Spec()) == p and runs() == 2
    assert list_entries()[0]["valid"]
    assert not list(cdir.glob(".trash-*")) and not list(cdir.glob(".tmp-*"))
    assert load(Spec()).fn("cd42_probe", ctypes.c_int, [ctypes.c_int])(2) == 3


def _child(barrier, q):
    barrier.wait()  # start both builders at the same moment
    try:
        q.put(("ok", str(build_one(Spec()))))
    except Exception as e:  # report instead of dying silently
        q.put(("err", repr(e)))


def test_concurrent_processes_build_once(cdir, tmp_path, monkeypatch):
    runs = _wrapper(tmp_path, monkeypatch, sleep=1)  # widen the race window
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(barrier, q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert [r[0] for r in results] == ["ok", "ok"], results
    assert results[0][1] == results[1][1]
    assert runs() == 1
    assert len(list_entries()) == 1 and not list(cdir.glob(".tmp-*"))


def test_strict_rejects_real_spills(cdir, monkeypatch):
    s = Spec(name="spill", src=SPILL, key="spill")
    with pytest.raises(BuildError) as ei:
        build_one(s)
    msg = str(ei.value)
    assert "'spill'" in msg and "register spills" in msg and "bytes stores" in msg
    assert "nvcc" in msg and "CUDADENT42_ALLOW_UNCLEAN" in msg
    failed = cdir / "failed" / entry_dir(s).name
    assert str(failed / "build.log") in msg and (failed / "build.log").is_file()
    assert not entry_dir(s).exists() and not list(cdir.glob(".tmp-*"))
    # Explicit opt-out, per call or globally; meta records it.
    assert build_one(s, strict=False).is_dir()
    meta = json.loads((entry_dir(s) / "meta.json").read_text())
    assert meta["strict"] is False and meta["spill_stores"] > 0 and meta["unclean"]
    # A strict caller must not silently pick up the unclean entry later...
    with pytest.raises(BuildError, match="unclean"):
        build_one(s)
    # ...unless CUDADENT42_ALLOW_UNCLEAN=1 is set.
    monkeypatch.setenv("CUDADENT42_ALLOW_UNCLEAN", "1")
    assert build_one(s) == entry_dir(s)


def test_strict_rejects_c7510(cdir, tmp_path, monkeypatch):
    _wrapper(tmp_path, monkeypatch, extra=f'echo "{C7510_LINE}" >&2')
    with pytest.raises(BuildError) as ei:
        build_one(Spec())
    assert "C7510" in str(ei.value) and "serialized" in str(ei.value)
    monkeypatch.setenv("CUDADENT42_ALLOW_UNCLEAN", "1")
    p = build_one(Spec())
    meta = json.loads((p / "meta.json").read_text())
    assert meta["allow_unclean"] is True and meta["c7510"] and meta["warnings"]


def test_strict_rejects_real_serialized_wgmma(cdir):
    s = Spec(name="wgmma_ser", src=WGMMA_SERIALIZED, key="wg")
    try:
        build_one(s)
    except BuildError as e:
        assert "serialized" in str(e)
    else:
        pytest.skip("this ptxas does not serialize the probe wgmma loop")


def test_build_parallel_with_one_failure(cdir, capsys):
    good, bad = Spec(), Spec(name="broken", src="this is not C++ {\n", key="broken")
    res = build([good, bad], jobs=2)
    assert [r.name for r in res] == ["probe", "broken"]
    assert res[0].ok and not res[0].cached and res[0].path == entry_dir(good)
    assert not res[1].ok and res[1].path is None
    assert "'broken'" in res[1].error and "nvcc exited" in res[1].error and "error" in res[1].error
    assert (cdir / "failed" / entry_dir(bad).name / "build.log").is_file()
    err = capsys.readouterr().err
    assert "1/2 built, 0 cached, 1 failed" in err and "[####" in err
    res2 = build([good, good], jobs=2, progress=False)
    assert all(r.ok and r.cached for r in res2)
    assert capsys.readouterr().err == ""


def test_build_records_toolchain_errors(cdir, monkeypatch):
    monkeypatch.setenv("CUDADENT42_NVCC", "/nonexistent/nvcc")
    res = build([Spec()], progress=False)
    assert not res[0].ok and "CUDADENT42_NVCC" in res[0].error
    with pytest.raises(ToolchainError):
        build_one(Spec())


def test_debug_keeps_intermediates(cdir, monkeypatch, capsys):
    monkeypatch.setenv("CUDADENT42_JIT_DEBUG", "1")
    p = build_one(Spec())
    err = capsys.readouterr().err
    assert "-Xptxas=-v" in err and "ptxas" in err and "regs" in err
    assert list(p.glob("*.ptx")) and list(p.glob("*.cubin"))
    assert json.loads((p / "meta.json").read_text())["debug"] is True


def test_list_clear_size(cdir):
    assert list_entries() == [] and cache_size_bytes() == 0 and clear() == 0
    build([Spec(), Spec(name="probe_b", key="b")], progress=False)
    ents = list_entries()
    assert sorted(e["name"] for e in ents) == ["probe", "probe_b"]
    for e in ents:
        assert e["valid"] and e["size"] > 0 and e["registers"] > 0 and e["spills"] == 0
        assert e["smem"] == 0 and len(e["digest"]) == 16
    assert cache_size_bytes() >= sum(e["size"] for e in ents)
    assert clear("probe_x*") == 0
    assert clear("_b") == 1  # plain substring (the CLI's --pattern)
    assert [e["name"] for e in list_entries()] == ["probe"]
    assert clear() == 1 and list_entries() == []


def test_failed_build_is_not_retried_in_process(tmp_path, monkeypatch):
    """A config that failed to build raises again without another nvcc run."""
    from cudadent42.jit import cache as jit_cache

    monkeypatch.setenv("CUDADENT42_CACHE_DIR", str(tmp_path))

    class Broken:
        name = "broken_probe"

        def key(self):
            return "broken-probe-v1"

        def render(self):
            return "this is not C++\n"

    calls = []
    real = jit_cache.build_one

    def counting(spec, **kw):
        calls.append(spec.name)
        return real(spec, **kw)

    monkeypatch.setattr(jit_cache, "build_one", counting)
    with pytest.raises(jit_cache.BuildError):
        jit_cache.load(Broken())
    with pytest.raises(jit_cache.BuildError):
        jit_cache.load(Broken())
    assert calls == ["broken_probe"]


def test_digest_does_not_depend_on_the_checkout_location(cdir, monkeypatch, tmp_path):
    # csrc/ enters the key by content, so a cache built in one checkout is
    # valid in a copy of it elsewhere (e.g. carried to the GPU machine).
    import shutil

    from cudadent42.jit import toolchain

    spec = Spec(src='#include "cute/abi.h"\n' + PROBE)
    base = digest(spec)
    copy = tmp_path / "elsewhere" / "csrc"
    shutil.copytree(toolchain.csrc_dir(), copy)
    monkeypatch.setattr(toolchain, "csrc_dir", lambda: copy)
    assert digest(spec) == base
    with open(copy / "cute" / "abi.h", "a") as f:
        f.write("// an edit\n")
    assert digest(spec) != base
