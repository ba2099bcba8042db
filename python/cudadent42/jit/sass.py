"""Disassemble built kernels and count the Hopper instructions that matter.

Used by tests and benchmarks to check that a config really compiled to the
intended code: HGMMA (wgmma), UTMALDG/UTMASTG (TMA), USETMAXREG (setmaxnreg),
and no LDL/STL (local memory = spills or dynamically indexed arrays).
"""
from __future__ import annotations

import os
import re
import subprocess
from collections import Counter

from .toolchain import ToolchainError, find_cuobjdump, find_nvdisasm

_WHEELS = "pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm (or put the CUDA toolkit's bin/ on PATH)"

# "/*0250*/   @!UP0 HGMMA.64x8x16.F32.BF16 R24, ..." -> opcode "HGMMA"
_INSN = re.compile(r"^\s*/\*[0-9a-fA-F]+\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)")

TRACKED = ("HGMMA", "UTMALDG", "UTMASTG", "LDL", "STL", "WARPGROUP", "USETMAXREG")


def dump_sass(so_path) -> str:
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        raise ToolchainError(f"cuobjdump not found: {_WHEELS}")
    nvdisasm = find_nvdisasm()
    if nvdisasm is None:
        # Without nvdisasm on PATH cuobjdump silently prints headers and no
        # SASS (exit status 0), which would make every count zero.
        raise ToolchainError(f"nvdisasm (needed by cuobjdump --dump-sass) not found: {_WHEELS}")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(
        [os.path.dirname(nvdisasm), os.path.dirname(cuobjdump), env.get("PATH", "")]
    )
    proc = subprocess.run(
        [cuobjdump, "--dump-sass", str(so_path)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"cuobjdump --dump-sass {so_path} failed ({proc.returncode}):\n{proc.stderr.strip()}"
        )
    return proc.stdout


def sass_stats(sass_text: str) -> dict:
    """Counts of the tracked opcodes (base opcode before the first '.') plus totals."""
    ops: Counter[str] = Counter()
    for line in sass_text.splitlines():
        m = _INSN.match(line)
        if m:
            ops[m.group(1)] += 1
    stats = {op: ops.get(op, 0) for op in TRACKED}
    stats["instructions"] = sum(ops.values())
    stats["functions"] = len(re.findall(r"^\s*Function\s*:", sass_text, flags=re.M))
    return stats
