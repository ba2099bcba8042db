"""Bad command-line arguments and config names get one-line errors that name
the argument, what was given and what is accepted (issue 19): one row per
bad input. CPU only; nothing here reaches nvcc."""
import subprocess
import sys
from pathlib import Path

import pytest

from cudadent42 import cli
from cudadent42.configs import AttnFwdConfig, ConfigError, GemmConfig
from cudadent42.configs.attention_bwd import AttnBwdConfig

BIG = "9" * 30

# (argv, fragments of the one stderr line)
CLI_ROWS = [
    (["build", "--family", "bogus"], ["argument --family", "'bogus'", "known: ", "gemm", "attn-fwd"]),
    (["build"], ["--family NAME", "or --all", "neither"]),
    (["build", "--all", "--family", "gemm"], ["--family NAME", "or --all", "both"]),
    (["build", "--family", "gemm", "--jobs", "0"], ["argument --jobs", "0 must be >= 1"]),
    (["sweep", "gemm", "--space", "stages=abc"], ["argument --space", "stages='abc'", "not an integer"]),
    (["sweep", "gemm", "--space", "bogus_field=1"], ["argument --space", "'bogus_field'", "tunable: wg_m, tile_n"]),
    (["sweep", "gemm", "--space", "stages"], ["argument --space", "'stages'", "FIELD=V1,V2"]),
    (["sweep", "attn-fwd", "--space", "softmax_under_pv=maybe"], ["softmax_under_pv='maybe'", "true, false"]),
    (["tune", "attn-bwd", "--space", "block_n=64"], ["'block_n' is not a tunable field of attn-bwd", "stages"]),
    (["sweep", "gemm", "--problem", "M=abc"], ["argument --problem", "M='abc'", "not an integer"]),
    (["sweep", "gemm", "--problem", "head_dim=64"], ["argument --problem", "'head_dim=64'", "fields: dtype"]),
    (["sweep", "gemm", "--problem", "M=0"], ["gemm problem", "M=0 must be >= 1"]),
    (["sweep", "gemm", "--m", "-5"], ["argument --m", "-5 must be >= 1"]),
    (["sweep", "attn-fwd", "--seqlen", "x"], ["argument --seqlen", "'x' is not an integer"]),
    (["sweep", "bogus"], ["argument family", "'bogus'", "gemm"]),
    (["sweep", "gemm", "--hdim", "64"], ["argument --hdim", "gemm has no head_dim", "fields: dtype, b_major"]),
    (["sweep", "gemm", "--causal"], ["argument --causal", "gemm has no mask"]),
    (["tune", "attn-fwd", "--deterministic"], ["argument --deterministic", "attn-fwd has no deterministic"]),
    (["sweep", "attn-fwd", "--hdim", "100"], ["no attn-fwd kernel serves", "head_dim=100", "(64, 96, 128"]),
    (["sweep", "attn-bwd", "--hdim", "80"], ["no attn-bwd kernel serves", "head_dim=80"]),
    (["sweep", "gemm", "--budget-s", "nan"], ["argument --budget-s", "nan must be a finite number > 0"]),
    (["sweep", "gemm", "--budget-s", "-1"], ["argument --budget-s", "-1 must be a finite number > 0"]),
    (["sweep", "gemm", "--limit", "0"], ["argument --limit", "0 must be >= 1"]),
    (["tune", "gemm", "--prune-by-profile", "0"], ["argument --prune-by-profile", "0 must be >= 1"]),
    (["profile", "gemm", "--top", "-1"], ["argument --top", "-1 must be >= 0"]),
    (["profile", "gemm", "--config", "gemm_bf16_bogus"], ["argument --config", "'gemm_bf16_bogus'",
                                                          "expected e.g. gemm_bf16_bk_m128"]),
    (["profile", "gemm", "--timeout", "0"], ["argument --timeout", "0 must be >= 1"]),
    (["cache", "list", "gemm"], ["cache list takes no NAME", "'gemm'"]),
    (["cache", "clear", "gemm", "--pattern", "attn"], ["NAME or --pattern, not both", "'gemm'", "'attn'"]),
    (["cache", "clear", " "], ["empty"]),
    (["cache", "purge"], ["argument action", "'purge'", "list", "clear"]),
    (["bench", "--only", "gemm,foo"], ["--only", "gemm, fwd, bwd", "'gemm,foo'"]),
    (["bench", "--rounds", "0"], ["argument --rounds", "0 must be >= 1"]),
]


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDADENT42_CACHE_DIR", str(tmp_path / "cache"))


def run_cli(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("argv, fragments", CLI_ROWS, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_bad_arguments_give_one_line_errors(argv, fragments, capsys):
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, (f, err)


@pytest.mark.parametrize("argv", [["cache", "clear", "gemm_bf16"], ["cache", "clear", "--pattern", "gemm_*"],
                                  ["cache", "list"]])
def test_cache_clear_takes_the_name_the_build_error_suggests(argv, capsys):
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0 and not err and ("removed 0 entries" in out or "0 entries" in out)


def test_the_unclean_build_hint_is_a_valid_command():
    src = (Path(cli.__file__).parent / "jit" / "cache.py").read_text()
    assert "`cudadent42 cache clear {spec.name}`" in src  # the hint this CLI now accepts (row above)


def test_module_entry_point_prints_no_traceback(tmp_path):
    env = {"PYTHONPATH": str(Path(cli.__file__).parents[1]), "CUDADENT42_CACHE_DIR": str(tmp_path), "PATH": ""}
    p = subprocess.run([sys.executable, "-m", "cudadent42", "build", "--family", "bogus"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "'bogus' is not a kernel family" in p.stderr


# (call, exception, fragment): config names and values from users or old tuned tables
API_ROWS = [
    (lambda: GemmConfig.from_name(f"gemm_bf16_bk_m128_n256_k64_st4_g{BIG}"), ConfigError, "group_m=" + BIG),
    (lambda: GemmConfig(group_m=65).validate(), ConfigError, "must be in 1..64"),
    (lambda: GemmConfig.from_name("gemm_bf16_bk_m128_n256_k64_st04_g8"), ConfigError, "not canonical"),
    (lambda: GemmConfig.from_name(f"gemm_bf16_bk_m{BIG[:-1]}8_n256_k64_st4_g8"), ConfigError, "wg_m="),
    (lambda: AttnFwdConfig.from_name(f"attn_fwd_bf16_hd{BIG}_m128_n128_st2_wg2"), ConfigError, "head_dim=" + BIG),
    (lambda: AttnFwdConfig.from_name(f"attn_fwd_bf16_hd128_m128_n128_st{BIG}_wg2"), ConfigError, "stages="),
    (lambda: AttnFwdConfig.from_name("attn_fwd_bf16_hd128_m128_n0128_st2_wg2"), ConfigError, "not canonical"),
    (lambda: AttnBwdConfig.from_name(f"attn_bwd_bf16_hd128_m64_n128_st{BIG}"), ConfigError, "stages="),
    (lambda: AttnBwdConfig.from_name(f"attn_bwd_bf16_hd128_m{BIG}_n128_st2"), ConfigError, "block_m="),
]


@pytest.mark.parametrize("call, exc, fragment", API_ROWS)
def test_bad_config_names_are_clear_errors(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()
