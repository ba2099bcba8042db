"""Build the default config of every combination the public API accepts and
fail on any that the ptxas gate refuses (issue 19: a supported call must
never raise a build error).

The matrix: attention forward (dtype x head dim x mask x softcap x varlen),
attention backward (the same x deterministic), GEMM (dtype x B major over a
size grid) and grouped GEMM (dtype x form x A/B majors over a size grid),
each mapped to its config by the code path the ops take (configs/select.py's
select(): tuned table, then the family heuristic; the backward through
ops/attention_bwd.py's default_config), once with no tuned entry and once
per GPU named in the shipped tuned table; plus every family's
default_configs() (what `cudadent42 build` pre-builds). Deduplicated, then
built with the strict gate (spills or wgmma serialization refuse a config).

  python scripts/build_default_matrix.py --cache-dir DIR [--jobs N] [--family attn-bwd,...]
                                         [--subset ci] [--shard K/N] [--list]

Prints one line per refused or failed config (name, reason) and exits 1 if
there is any; 0 when every config built clean.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from cudadent42 import families  # noqa: E402
from cudadent42.configs.attention import HEAD_DIMS, MASKS  # noqa: E402
from cudadent42.configs.attention_bwd import BWD_HEAD_DIMS, BWD_MASKS  # noqa: E402
from cudadent42.configs.base import DTYPES  # noqa: E402
from cudadent42.configs.grouped_gemm import MODES  # noqa: E402
from cudadent42.configs.select import select  # noqa: E402
from cudadent42.ops.attention_bwd import default_config as attn_bwd_default  # noqa: E402
from cudadent42.tune import autotune, table  # noqa: E402

NO_TUNED_ENTRY = "(no tuned entry)"  # a GPU name no table key carries: the heuristic answers
BOOLS = (False, True)
# Sizes the selection sees: the attention heuristics ignore the sequence length (the tuned
# table buckets it); the GEMM heuristics switch tiles on N <= 128 and on the 128x256 tile count
# against the SM count, which this grid crosses both ways.
SEQLENS = (128, 8192, 131072)
GEMM_SIZES = (64, 128, 256, 1024, 8192, 65536)
GEMM_K = (64, 8192)
GROUPS = (1, 8, 128)
FAMILY_ORDER = ("attn-bwd", "attn-fwd", "grouped-gemm", "moe-up", "gemm")  # slowest builds first
# CI subset: the backward defaults that once spilled 8 bytes (fp16 + softcap + head dim 128, no
# mask, dense and varlen), so `loss.backward()` raised a build error.
CI_COMBOS = [("attn-bwd", dict(dtype="fp16", head_dim=128, mask="none", softcap=True, varlen=varlen,
                               deterministic=False)) for varlen in BOOLS]


def gpus() -> list[str]:
    """The heuristic's answer, and each GPU the shipped tuned table has entries for."""
    entries = json.loads(table.SHIPPED.read_text()).get("entries", {})
    return [NO_TUNED_ENTRY] + sorted({key.split("|", 1)[0] for key in entries})


def attn_fwd_combos():
    for dtype, hd, mask, softcap, varlen in itertools.product(DTYPES, HEAD_DIMS, MASKS, BOOLS, BOOLS):
        yield dict(dtype=dtype, head_dim=hd, mask=mask, softcap=softcap, varlen=varlen)


def attn_bwd_combos():
    for dtype, hd, mask, softcap, varlen, det in itertools.product(DTYPES, BWD_HEAD_DIMS, BWD_MASKS, BOOLS, BOOLS,
                                                                  BOOLS):
        yield dict(dtype=dtype, head_dim=hd, mask=mask, softcap=softcap, varlen=varlen, deterministic=det)


def gemm_combos():
    for dtype, b_major in itertools.product(DTYPES, ("k", "n")):
        yield dict(dtype=dtype, b_major=b_major)


def grouped_gemm_combos():
    """Every layout the API takes, as the kernel sees it: ops/grouped_gemm.py ragged_strided copies an
    operand whose contiguous dimension is the ragged one to the other layout first."""
    seen = set()
    for dtype, mode, a_major, b_major in itertools.product(DTYPES, MODES, ("k", "m"), ("k", "n")):
        a_major = "k" if mode == "m" else "m" if mode == "k" else a_major
        b_major = "k" if mode == "n" else "n" if mode == "k" else b_major
        if (dtype, mode, a_major, b_major) not in seen:
            seen.add((dtype, mode, a_major, b_major))
            yield dict(dtype=dtype, mode=mode, a_major=a_major, b_major=b_major)


def moe_up_combos():
    for dtype in DTYPES:
        yield dict(dtype=dtype)


def moe_up_configs(combo, gpu):
    return {select("moe-up", gpu, **combo, T=32768, k=8, H=4096, F=1024, E=128)}


def attn_fwd_configs(combo, gpu):
    return {select("attn-fwd", gpu, **combo, seqlen=s) for s in SEQLENS}


def attn_bwd_configs(combo, gpu):
    c = combo
    return {attn_bwd_default(c["dtype"], c["head_dim"], c["mask"], c["deterministic"], c["softcap"], c["varlen"], s,
                             gpu) for s in SEQLENS}


def gemm_configs(combo, gpu):
    return {select("gemm", gpu, **combo, M=m, N=n, K=k) for m, n, k in itertools.product(GEMM_SIZES, GEMM_SIZES,
                                                                                          GEMM_K)}


def grouped_gemm_configs(combo, gpu):
    return {select("grouped-gemm", gpu, **combo, M=m, N=n, K=k, G=g)
            for m, n, k, g in itertools.product(GEMM_SIZES, GEMM_SIZES, GEMM_K, GROUPS)}


# family -> (every combination its public API accepts, combination + GPU -> the configs the ops pick)
API = {
    "attn-fwd": (attn_fwd_combos, attn_fwd_configs),
    "attn-bwd": (attn_bwd_combos, attn_bwd_configs),
    "gemm": (gemm_combos, gemm_configs),
    "grouped-gemm": (grouped_gemm_combos, grouped_gemm_configs),
    "moe-up": (moe_up_combos, moe_up_configs),
}


def combo_label(family: str, combo: dict) -> str:
    return family + " " + " ".join(f"{k}={v}" for k, v in combo.items())


def matrix(family_names=None, subset: str | None = None) -> dict:
    """config -> the (family, combination) labels it serves, slowest family first, deduplicated."""
    names = [f for f in FAMILY_ORDER if family_names is None or f in family_names]
    missing = set(families.names()) - set(FAMILY_ORDER)
    if missing:  # a new family must say what its API accepts before the matrix can claim to cover it
        raise RuntimeError(f"build_default_matrix.py: no API enumeration for families {sorted(missing)}")
    out: dict = {}
    for fam in names:
        combos_fn, configs_fn = API[fam]
        combos = [c for f, c in CI_COMBOS if f == fam] if subset == "ci" else list(combos_fn())
        for combo, gpu in itertools.product(combos, gpus()):
            with autotune.requested(False):  # the defaults, not what a tuning run would record
                cfgs = configs_fn(combo, gpu)
            for cfg in sorted(cfgs, key=lambda c: c.name):
                out.setdefault(cfg, {})[combo_label(fam, combo)] = None
        if subset != "ci":
            for cfg in families.get(fam).default_configs():
                out.setdefault(cfg, {})[f"{fam} default_configs()"] = None
    return {cfg: list(labels) for cfg, labels in out.items()}


def shard(cfgs: list, spec: str | None) -> list:
    """Every N-th config from the K-th (1-based): shards of one matrix mix the families evenly."""
    if spec is None:
        return cfgs
    k, n = (int(x) for x in spec.split("/"))
    return cfgs[k - 1::n]


def _shard_spec(text: str) -> str:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes K/N (e.g. 1/3), got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return text


def _family_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in API]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--family takes a comma list of {', '.join(FAMILY_ORDER)}; got {text!r}")
    return names


def _reason(error: str) -> str:
    """The BuildError's reason line (the gate's verdict), else its first line."""
    lines = error.splitlines()
    return next((line.split("reason:", 1)[1].strip() for line in lines if "reason:" in line), lines[0] if lines else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", required=True, help="JIT cache to build into (CUDADENT42_CACHE_DIR)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel nvcc builds (default: cores)")
    ap.add_argument("--family", type=_family_list, help=f"comma list of {', '.join(FAMILY_ORDER)} (default: all)")
    ap.add_argument("--subset", choices=("ci",), help="ci: only the fp16 softcap hd128 backward defaults")
    ap.add_argument("--shard", type=_shard_spec, help="K/N: build every N-th config from the K-th (split a run)")
    ap.add_argument("--list", action="store_true",
                    help="print the configs (and a combination each serves), build nothing")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")

    os.environ["CUDADENT42_CACHE_DIR"] = str(Path(args.cache_dir).expanduser().resolve())
    if os.environ.pop("CUDADENT42_ALLOW_UNCLEAN", None):
        print("note: CUDADENT42_ALLOW_UNCLEAN ignored: the matrix checks the strict ptxas gate", file=sys.stderr)
    mx = matrix(args.family, args.subset)
    cfgs = shard(list(mx), args.shard)
    if args.list:
        for cfg in cfgs:
            print(f"{cfg.name}  ({len(mx[cfg])} combinations, e.g. {mx[cfg][0]})")
        print(f"{len(cfgs)} configs")
        return 0

    from cudadent42.jit import build  # deferred: --list needs no toolchain

    t0 = time.monotonic()
    results = build(cfgs, jobs=args.jobs, progress=True)
    bad = [(cfg, r) for cfg, r in zip(cfgs, results) if not r.ok]
    for cfg, r in bad:
        print(f"REFUSED {r.name}: {_reason(r.error or '')}  [serves {len(mx[cfg])}: {mx[cfg][0]}]")
    cached = sum(r.cached for r in results)
    print(f"{len(results) - len(bad)}/{len(results)} configs clean ({cached} from the cache) in "
          f"{time.monotonic() - t0:.0f} s with {args.jobs} jobs; {len(bad)} refused or failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
