"""Parse `ptxas -v` output into the numbers the cache records and checks.

Formats seen in practice (CUDA 12.x and 13.0):

    ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90a'
    ptxas info    : Function properties for _Z3fooPf
        272 bytes stack frame, 496 bytes spill stores, 496 bytes spill loads
    ptxas info    : Used 168 registers, used 1 barriers, 16 bytes smem, 400 bytes cmem[0]
    ptxas warning : (C7510) Potential Performance Loss: wgmma.mma_async instructions are serialized ...
    ptxas info    : (C7511) Potential Performance Loss: wgmma.mma_async instructions are serialized ...

CUDA 13 reports the wgmma serialization diagnostics (C7510/C7511/C7520...)
at "info" level instead of "warning", so they are matched by content, not by
severity: any ptxas diagnostic mentioning "serialized" counts.
"""
from __future__ import annotations

import re

_FUNC_PROPS = re.compile(r"Function properties for\s+(\S+)")
_COMPILING = re.compile(r"Compiling entry function '([^']+)'")
_STACK = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_CODE = re.compile(r"\((C\d{4})\)")
_DIAG = re.compile(r"^\s*ptxas\s+(warning|info|error)\s*:\s*(.*)$")


def _is_notable(severity: str, msg: str) -> bool:
    # Warnings always matter; info lines only when they flag a performance
    # problem (the C75xx wgmma family), not the routine C7519 "arrive injected".
    if severity in ("warning", "error"):
        return True
    return "Performance Loss" in msg or "serialized" in msg


def parse_ptxas(log: str) -> dict:
    """Summarise a ptxas -v log.

    registers/smem/stack are the max over all functions (the kernel entry is
    the one that matters and is normally the largest); spill bytes are summed
    over functions because a spill in a called device function costs the
    kernel just the same.  `functions` holds the per-function details.
    """
    funcs: dict[str, dict] = {}
    current: str | None = None
    warnings: list[str] = []
    codes: list[str] = []
    arrives_injected = 0  # C7519: ptxas added warpgroup.arrive (an operand was not fenced)
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = _COMPILING.search(line)
        if m:
            current = m.group(1)
            funcs.setdefault(current, {"entry": True})["entry"] = True
        m = _FUNC_PROPS.search(line)
        if m:
            current = m.group(1)
            f = funcs.setdefault(current, {"entry": False})
            # The stack/spill numbers are on the line that follows.
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            s = _STACK.search(nxt)
            if s:
                f["stack_bytes"], f["spill_stores"], f["spill_loads"] = map(int, s.groups())
        m = _USED.search(line)
        if m and current is not None:
            f = funcs.setdefault(current, {"entry": False})
            f["registers"] = int(m.group(1))
            sm = _SMEM.search(line)
            f["smem_bytes"] = int(sm.group(1)) if sm else 0
        d = _DIAG.match(line)
        if d and "C7519" in line:
            arrives_injected += 1
        if d and _is_notable(d.group(1), d.group(2)):
            warnings.append(line.strip())
            c = _CODE.search(line)
            if c:
                codes.append(c.group(1))

    def agg(field, how):
        vals = [f.get(field, 0) for f in funcs.values()]
        return how(vals) if vals else 0

    serialized = any("serialized" in w for w in warnings)
    return {
        "registers": agg("registers", max),
        "smem_bytes": agg("smem_bytes", max),
        "stack_bytes": agg("stack_bytes", max),
        "spill_stores": agg("spill_stores", sum),
        "spill_loads": agg("spill_loads", sum),
        "warnings": warnings,
        "codes": sorted(set(codes)),
        "c7510": "C7510" in codes,
        "serialized": serialized,
        "arrives_injected": arrives_injected,
        "functions": funcs,
    }


def summary(p: dict) -> str:
    """One line for logs and debug output."""
    s = (
        f"{p['registers']} regs, {p['smem_bytes']} B static smem, {p['stack_bytes']} B stack, "
        f"spills {p['spill_stores']}/{p['spill_loads']} B st/ld"
    )
    if p["serialized"]:
        s += f", wgmma SERIALIZED ({', '.join(p['codes']) or 'no code'})"
    return s
