"""parse_ptxas on real `nvcc -Xptxas=-v` logs.

The fixtures below were produced with nvcc 13.0.88 (-gencode arch=compute_90a,
code=sm_90a -O3 -Xptxas=-v) from small kernels: a trivial kernel, a kernel
with 64 live floats under __launch_bounds__(1024, 2) (forces 32 registers ->
spills), a kernel using 4 KiB static smem plus a dynamically indexed local
array (stack, no spills), and inline-PTX wgmma loops that ptxas serializes.
CUDA 13 prints the wgmma serialization notes at "info" level; CUDA 12.x
printed them as "ptxas warning", which LOG_C7510_CUDA12 reproduces.
"""

from cudadent42.jit.ptxas import parse_ptxas, summary

LOG_CLEAN = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z9cd42_noopPf' for 'sm_90a'
ptxas info    : Function properties for _Z9cd42_noopPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 0 barriers
ptxas info    : Compile time = 10.673 ms
"""

LOG_SPILL = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z12spill_kernelPfPKfi' for 'sm_90a'
ptxas info    : Function properties for _Z12spill_kernelPfPKfi
    272 bytes stack frame, 496 bytes spill stores, 496 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers, 272 bytes cumulative stack size
ptxas info    : Compile time = 16.603 ms
"""

# -maxrregcount=32 -Xptxas=-warn-spills: two kernels, one spilling, plus the warning line.
LOG_TWO_KERNELS_WARN_SPILLS = """\
ptxas info    : Overriding maximum register limit 256 for '_Z12small_kernelPf' with  32 of maxrregcount option
ptxas info    : Overriding maximum register limit 256 for '_Z12spill_kernelPfPKfi' with  32 of maxrregcount option
ptxas warning : Registers are spilled to local memory in function '_Z12spill_kernelPfPKfi', 496 bytes spill stores, 496 bytes spill loads
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z12small_kernelPf' for 'sm_90a'
ptxas info    : Function properties for _Z12small_kernelPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 1 barriers, 16 bytes smem
ptxas info    : Compile time = 1.926 ms
ptxas info    : Compiling entry function '_Z12spill_kernelPfPKfi' for 'sm_90a'
ptxas info    : Function properties for _Z12spill_kernelPfPKfi
    272 bytes stack frame, 496 bytes spill stores, 496 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers, 272 bytes cumulative stack size
ptxas info    : Compile time = 16.054 ms
"""

LOG_SMEM_STACK = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z11smem_kernelPfi' for 'sm_90a'
ptxas info    : Function properties for _Z11smem_kernelPfi
    256 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 256 bytes cumulative stack size, 4096 bytes smem
ptxas info    : Compile time = 7.992 ms
ptxas info    : Function properties for _Z6helperPfi
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
"""

LOG_WGMMA_OK = """\
ptxas info    : (C7519) warpgroup.arrive is injected in around line 73 by compiler to allow use of registers in GMMA in function '_Z9wg_kernelPfmm'
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z9wg_kernelPfmm' for 'sm_90a'
ptxas info    : Function properties for _Z9wg_kernelPfmm
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 0 barriers
ptxas info    : Compile time = 2.750 ms
ptxas info    : Function properties for _Z6ext_fnPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
"""

LOG_C7511 = """\
ptxas info    : (C7519) warpgroup.arrive is injected in around line 69 by compiler to allow use of registers in GMMA in function '_Z9wg_kernelPfmmi'
ptxas info    : (C7517) warpgroup.wait is injected in around line 67 by compiler to allow use of registers defined by GMMA in function '_Z9wg_kernelPfmmi'
ptxas info    : (C7511) Potential Performance Loss: wgmma.mma_async instructions are serialized due to insufficient register resources for the wgmma pipeline in the function '_Z9wg_kernelPfmmi'
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z9wg_kernelPfmmi' for 'sm_90a'
ptxas info    : Function properties for _Z9wg_kernelPfmmi
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 0 barriers
ptxas info    : Compile time = 12.985 ms
"""

LOG_C7520 = """\
ptxas info    : (C7519) warpgroup.arrive is injected in around line 168 by compiler to allow use of registers in GMMA in function '_Z9wg_kernelPfmmi'
ptxas info    : (C7520) Potential Performance Loss: wgmma.mma_async instructions are serialized due to program dependence on compiler-inserted WG.AR in divergent path in the function '_Z9wg_kernelPfmmi'
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z9wg_kernelPfmmi' for 'sm_90a'
ptxas info    : Function properties for _Z9wg_kernelPfmmi
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 0 barriers
ptxas info    : Compile time = 6.959 ms
"""

LOG_C7510_CUDA12 = """\
ptxas info    : 11 bytes gmem
ptxas info    : Compiling entry function '_Z10attn_fwd_kPv' for 'sm_90a'
ptxas info    : Function properties for _Z10attn_fwd_kPv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 168 registers, used 1 barriers, 16 bytes smem, 400 bytes cmem[0]
ptxas warning : (C7510) Potential Performance Loss: wgmma.mma_async instructions are serialized due to the presence of Extern calls in the function '_Z10attn_fwd_kPv'
"""


def test_clean():
    p = parse_ptxas(LOG_CLEAN)
    assert p["registers"] == 8
    assert (p["smem_bytes"], p["stack_bytes"], p["spill_stores"], p["spill_loads"]) == (0, 0, 0, 0)
    assert p["warnings"] == [] and not p["c7510"] and not p["serialized"]
    assert p["functions"]["_Z9cd42_noopPf"]["entry"] is True


def test_spills():
    p = parse_ptxas(LOG_SPILL)
    assert p["registers"] == 32 and p["stack_bytes"] == 272
    assert p["spill_stores"] == 496 and p["spill_loads"] == 496
    assert not p["serialized"]


def test_two_kernels_max_registers_and_spill_warning():
    p = parse_ptxas(LOG_TWO_KERNELS_WARN_SPILLS)
    assert p["registers"] == 32  # max over functions
    assert p["smem_bytes"] == 16
    assert (p["spill_stores"], p["spill_loads"]) == (496, 496)
    assert len(p["functions"]) == 2
    assert len(p["warnings"]) == 1 and "spilled" in p["warnings"][0]
    assert not p["serialized"]


def test_static_smem_and_stack_without_spills():
    p = parse_ptxas(LOG_SMEM_STACK)
    assert p["registers"] == 40 and p["smem_bytes"] == 4096 and p["stack_bytes"] == 256
    assert p["spill_stores"] == p["spill_loads"] == 0
    # A non-entry device function: properties recorded, no register line.
    assert p["functions"]["_Z6helperPfi"]["entry"] is False


def test_injected_arrive_is_not_a_warning():
    p = parse_ptxas(LOG_WGMMA_OK)
    assert p["warnings"] == [] and not p["serialized"] and p["registers"] == 30
    assert p["arrives_injected"] == 1  # counted, so the kernel smoke tests can require 0
    assert parse_ptxas("")["arrives_injected"] == 0


def test_serialized_cuda13_info_level():
    for log, code in ((LOG_C7511, "C7511"), (LOG_C7520, "C7520")):
        p = parse_ptxas(log)
        assert p["serialized"] and not p["c7510"]
        assert p["codes"] == [code]
        assert len(p["warnings"]) == 1 and "serialized" in p["warnings"][0]
        assert "SERIALIZED" in summary(p)


def test_c7510_cuda12_warning_level():
    p = parse_ptxas(LOG_C7510_CUDA12)
    assert p["c7510"] and p["serialized"] and p["codes"] == ["C7510"]
    assert p["registers"] == 168 and p["smem_bytes"] == 16


def test_empty_log():
    p = parse_ptxas("")
    assert p["registers"] == 0 and p["warnings"] == [] and not p["serialized"]
