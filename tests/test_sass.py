"""SASS dump and opcode counts on a real (tiny) build; skipped without cuobjdump."""
import pytest

from cudadent42.jit import ToolchainError, build_one, dump_sass, sass_stats, toolchain
from cudadent42.jit.sass import TRACKED

PROBE = """\
extern "C" __attribute__((visibility("default"))) int cd42_probe(int x) { return x + 1; }
__global__ void cd42_noop(float* p) { if (p) p[threadIdx.x] += 1.0f; }
"""

# Hand-written excerpt in cuobjdump's format (sm_90a), covering predicated
# opcodes and the dotted variants that must count under their base opcode.
SASS_SNIPPET = """\
\t\tFunction : _Z9wg_kernelPfmmi
        /*0000*/                   LDC R1, c[0x0][0x28] ;                                /* 0x00000a00ff017b82 */
        /*0010*/                   USETMAXREG.DEALLOC.CTAPOOL 0x28 ;                     /* 0x00000000000079c8 */
        /*0060*/              @!P0 BRA 0x1870 ;                                          /* 0x0000001800008947 */
        /*0070*/              @P1  UTMALDG.2D [UR8], [UR4] ;                             /* 0x00000008040075b4 */
        /*0210*/                   WARPGROUP.ARRIVE ;                                    /* 0x00000000000079c5 */
        /*0250*/                   HGMMA.64x8x16.F32.BF16 R24, gdesc[UR12], R24, gsb0 ;  /* 0x000000000c1879f0 */
        /*02a0*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;                       /* 0x00008000000079c5 */
        /*02c0*/                   HGMMA.64x8x16.F16 RZ, gdesc[URZ], RZ, !UPT, gsb0 ;    /* 0x000000003fff79f0 */
        /*0300*/                   STL [R1+0x90], R24 ;                                  /* 0x0000901801007387 */
        /*0310*/                   LDL.64 R2, [R1+0x90] ;                                /* 0x0000901801027983 */
        /*0320*/             @!UP0 UTMASTG.2D [UR4], [UR8] ;                             /* 0x00000004080073b5 */
        /*0330*/                   EXIT ;                                                /* 0x000000000000794d */
"""


def test_sass_stats_counts_snippet():
    s = sass_stats(SASS_SNIPPET)
    assert s == {
        "HGMMA": 2, "UTMALDG": 1, "UTMASTG": 1, "LDL": 1, "STL": 1, "WARPGROUP": 2,
        "USETMAXREG": 1, "instructions": 12, "functions": 1,
    }


@pytest.mark.compile
def test_dump_sass_of_built_probe(monkeypatch, tmp_path):
    if toolchain.find_cuobjdump() is None or toolchain.find_nvdisasm() is None:
        pytest.skip("cuobjdump/nvdisasm not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    monkeypatch.setenv("CUDADENT42_CACHE_DIR", str(tmp_path))

    class Spec:
        name = "sass_probe"

        def render(self):
            return PROBE

        def key(self):
            return "sass_probe"

    so = build_one(Spec()) / "kernel.so"
    text = dump_sass(so)
    assert "cd42_noop" in text and "EXIT" in text
    s = sass_stats(text)
    assert all(isinstance(s[k], int) for k in TRACKED)
    assert s["HGMMA"] == 0 and s["LDL"] == 0 and s["STL"] == 0
    assert s["instructions"] > 0 and s["functions"] == 1


def test_missing_cuobjdump_names_wheels(monkeypatch, tmp_path):
    monkeypatch.setattr("cudadent42.jit.sass.find_cuobjdump", lambda: None)
    with pytest.raises(ToolchainError, match="nvidia-cuda-cuobjdump"):
        dump_sass(tmp_path / "x.so")
    monkeypatch.setattr("cudadent42.jit.sass.find_cuobjdump", lambda: "/bin/true")
    monkeypatch.setattr("cudadent42.jit.sass.find_nvdisasm", lambda: None)
    with pytest.raises(ToolchainError, match="nvidia-cuda-nvdisasm"):
        dump_sass(tmp_path / "x.so")
