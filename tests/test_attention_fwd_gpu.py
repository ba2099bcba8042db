"""Attention forward on the GPU vs a float32 reference (GUIDE.md section 5)."""
import functools

import pytest
import torch
import torch.nn.functional as F

import cudadent42
from cudadent42 import flash_attn_func, flash_attn_varlen_func
from cudadent42.configs.heuristics_sm90 import attn_fwd_config
from cudadent42.reference import assert_close_to_ref
from cudadent42.reference import attention as _attention

attention_ref = functools.partial(_attention, return_lse=True)  # (out, LSE): the tests check both

pytestmark = pytest.mark.gpu

# Tiles off the heuristic's path, each taking a different branch of the
# consumer loop: masked blocks serial + clean ones overlapped (D=256 N=80
# causal: serial, since its overlapped loop would spill), N=176 overlapped,
# a left window whose bottom blocks are masked again; and the PV wait left to
# ptxas (softmax_under_pv=False) on both loop structures.
EXPLICIT_TILES = [dict(head_dim=256, block_n=80, mask="causal"), dict(head_dim=128, block_n=176, mask="none"),
                  dict(head_dim=256, block_n=64, mask="local"), dict(head_dim=128, block_n=128, mask="local"),
                  dict(head_dim=128, block_n=128, mask="causal", softmax_under_pv=False),
                  dict(head_dim=256, block_n=64, mask="none", softmax_under_pv=False)]


# Configs beyond the defaults that these tests reach (scripts/gpu_check.sh pre-builds them in parallel).
PREBUILD = list(dict.fromkeys(
    [attn_fwd_config(dt, d, m, False, False)  # what the heuristic picks for the tests' default calls
     for dt in ("bf16", "fp16") for d in (64, 96, 128, 192, 256) for m in ("none", "causal")]
    + [attn_fwd_config("bf16", d, "causal" if d == 128 else "none", True, False) for d in (64, 128, 256)]
    + [attn_fwd_config("bf16", 128, "local", False, False), attn_fwd_config("fp16", 128, "none", True, False)]
    + [attn_fwd_config("bf16", d, m, sc, True) for d in (64, 128) for m in ("none", "causal") for sc in (False, True)]
    + [cudadent42.AttnFwdConfig(head_dim=128, block_n=64, stages=3, mask="causal")]
    + [cudadent42.AttnFwdConfig(stages=2, **t) for t in EXPLICIT_TILES]
))


def poison_allocator(*shapes_dtypes):
    """Fill the blocks the op is about to allocate with NaN, so unwritten
    output elements show up as NaN instead of stale finite values."""
    blocks = [torch.full(s, float("nan"), dtype=d, device="cuda") for s, d in shapes_dtypes]
    del blocks


def rand(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, device="cuda", dtype=dtype)


def check_fwd(q, k, v, causal=False, window=(-1, -1), softcap=0.0, scale=None):
    B, Sq, H, D = q.shape
    poison_allocator(((B, Sq, H, D), q.dtype), ((B, H, Sq), torch.float32))
    out, lse = flash_attn_func(q, k, v, causal=causal, window_size=window, softcap=softcap, softmax_scale=scale,
                               return_lse=True)
    torch.cuda.synchronize()
    ref, ref_lse = attention_ref(q, k, v, causal, window, softcap, scale)
    lowp, _ = attention_ref(q, k, v, causal, window, softcap, scale, upcast=False)
    assert out.shape == q.shape and lse.shape == (B, H, Sq)
    assert_close_to_ref(out, ref, lowp, "out")
    check_lse(lse, ref_lse)
    return out, lse


def check_lse(lse, ref_lse):
    assert not torch.isnan(lse).any(), "NaN in LSE"
    inf = torch.isinf(ref_lse)
    assert torch.equal(torch.isinf(lse), inf), "fully masked rows must have LSE = +inf (and only those)"
    assert torch.all(lse[inf] > 0), "LSE of fully masked rows must be +inf"
    fin = ~inf
    assert torch.allclose(lse[fin], ref_lse[fin], atol=2e-3, rtol=1e-3), \
        f"LSE max error {(lse[fin] - ref_lse[fin]).abs().max().item():.3e}"


SEQLENS = [(1, 1), (17, 113), (113, 17), (1000, 1000), (257, 4097)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 96, 128, 192, 256])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlens", SEQLENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fwd_matches_reference(seqlens, causal, head_dim, dtype):
    sq, sk = seqlens
    q, k, v = rand(2, sq, 4, head_dim, dtype=dtype), rand(2, sk, 2, head_dim, dtype=dtype), \
        rand(2, sk, 2, head_dim, dtype=dtype)
    check_fwd(q, k, v, causal=causal)


@pytest.mark.parametrize("heads", [(8, 8), (8, 2), (16, 2), (8, 1)], ids=lambda h: f"{h[0]}q{h[1]}kv")
def test_fwd_gqa_mqa(heads):
    hq, hk = heads
    check_fwd(rand(3, 300, hq, 128), rand(3, 555, hk, 128), rand(3, 555, hk, 128), causal=True)


def test_fwd_causal_tile_sections():
    """Causal tiles go longest-first in sections of (batch, head) pairs whose
    K/V fit in a 32 MB L2 budget (tile_scheduler.hpp). At seqlen_k = 4097 and
    D = 256 a K/V head is 4.2 MB: 7 per section, 21 query heads with this GQA
    group, so the 27 pairs make a full section and a partial one; every tile
    of both must be written exactly once (the output is NaN-poisoned)."""
    check_fwd(rand(3, 1000, 9, 256), rand(3, 4097, 3, 256), rand(3, 4097, 3, 256), causal=True)


@pytest.mark.parametrize("head_dim,softcap,dtype", [(64, 0.0, torch.bfloat16), (128, 0.0, torch.bfloat16),
                                                     (128, 20.0, torch.float16), (256, 0.0, torch.bfloat16)])
def test_fwd_split_tail(head_dim, softcap, dtype):
    """Without a mask the last partial wave of tiles is split by key range
    over all SMs and the pieces are combined by whichever finishes last
    (split_tail.hpp). 240 tiles of 13 (or 26) key blocks, the last one
    ragged: on 132 SMs the 108-tile tail makes ~10.6-block items, so pieces
    start and end inside tiles and cross tile boundaries. The result must
    match the reference and be the same bits on every run (the combine goes
    in piece order, not arrival order)."""
    from cudadent42.ops import attention as attn_ops

    q, k, v = (rand(3, 1000, 10, head_dim, dtype=dtype), rand(3, 1650, 10, head_dim, dtype=dtype),
               rand(3, 1650, 10, head_dim, dtype=dtype))
    first, _ = check_fwd(q * 2, k, v, softcap=softcap)
    counters, workspace = attn_ops.last_split_sizes
    assert counters > 1 and workspace > 0, f"the tail was not split here (sizes {attn_ops.last_split_sizes})"
    for _ in range(3):
        assert torch.equal(first, flash_attn_func(q * 2, k, v, softcap=softcap)), "split tail result moves"


@pytest.mark.parametrize("window", [(64, 32), (0, 0), (128, -1), (-1, 64), (5, 300)])
@pytest.mark.parametrize("causal", [False, True])
def test_fwd_sliding_window(window, causal):
    check_fwd(rand(2, 700, 4, 128), rand(2, 900, 4, 128), rand(2, 900, 4, 128), causal=causal, window=window)


@pytest.mark.parametrize("softcap", [5.0, 30.0])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
def test_fwd_softcap(softcap, head_dim):
    q = rand(2, 333, 4, head_dim) * 3  # large logits so the cap matters
    check_fwd(q, rand(2, 444, 4, head_dim), rand(2, 444, 4, head_dim), causal=head_dim == 128, softcap=softcap)


@pytest.mark.parametrize("head_dim,dtype", [(64, torch.bfloat16), (128, torch.bfloat16), (256, torch.bfloat16),
                                             (128, torch.float16)], ids=["64-bf16", "128-bf16", "256-bf16", "128-fp16"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("jump", [3.0, 20.0])
def test_fwd_running_max_jumps(jump, causal, head_dim, dtype):
    """Scores that rise by `jump` (log2 units) per 128 keys towards key 0, so
    each block the kernel walks (from the last) raises the row max: at 20 the
    max moves every block (O rescaled), at 3 it stays stale for a few blocks
    (P up to 2^8 against the stale max, softmax.hpp kStaleMaxLog2) and then moves."""
    torch.manual_seed(head_dim + int(jump) + causal)
    sq, sk = 333, 1500
    q = rand(2, sq, 4, head_dim, dtype=dtype)
    k, v = rand(2, sk, 4, head_dim, dtype=dtype), rand(2, sk, 4, head_dim, dtype=dtype)
    scale = head_dim ** -0.5
    per_key = jump / 128 / (scale * 1.4426950408889634)  # raw score step per key
    ramp = (sk - torch.arange(sk, device="cuda", dtype=torch.float32)) * per_key / 8
    q[..., 0] = 8.0
    k[..., 0] = ramp[None, :, None].to(dtype)
    check_fwd(q, k, v, causal=causal)


def test_fwd_custom_scale_and_large_batch():
    check_fwd(rand(64, 65, 2, 64), rand(64, 65, 2, 64), rand(64, 65, 2, 64), scale=0.3)


def test_fwd_fully_masked_rows_give_zero_and_inf_lse():
    # Causal with sq > sk: the first sq - sk rows see no key (bottom-right alignment).
    q, k, v = rand(1, 300, 2, 64), rand(1, 100, 2, 64), rand(1, 100, 2, 64)
    out, lse = check_fwd(q, k, v, causal=True)
    assert torch.all(out[:, :200] == 0) and torch.all(torch.isinf(lse[:, :, :200]))


def test_fwd_non_contiguous_inputs():
    qkv = rand(2, 513, 3, 6, 128)  # packed projections: q, k, v are strided views
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    assert not q.is_contiguous()
    check_fwd(q, k, v, causal=True)
    kv_big = rand(2, 6, 700, 128).transpose(1, 2)[:, :513]  # (B, S, H, D) view of a (B, H, S, D) tensor
    check_fwd(q, kv_big, kv_big)


def test_fwd_empty_and_zero_length():
    q = rand(2, 0, 4, 64)
    out, lse = flash_attn_func(q, rand(2, 10, 4, 64), rand(2, 10, 4, 64), return_lse=True)
    assert out.shape == (2, 0, 4, 64) and lse.shape == (2, 4, 0)
    q = rand(2, 5, 4, 64)
    out, lse = flash_attn_func(q, rand(2, 0, 4, 64), rand(2, 0, 4, 64), return_lse=True)
    assert torch.all(out == 0) and torch.all(torch.isinf(lse))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("softcap", [0.0, 20.0])
def test_fwd_varlen(causal, head_dim, softcap):
    gen = torch.Generator().manual_seed(1234 + head_dim)
    lens_q = torch.randint(1, 400, (6,), generator=gen).tolist() + [0, 129]
    lens_k = torch.randint(1, 500, (6,), generator=gen).tolist() + [7, 128]
    cu_q = torch.tensor([0] + torch.tensor(lens_q).cumsum(0).tolist(), dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0] + torch.tensor(lens_k).cumsum(0).tolist(), dtype=torch.int32, device="cuda")
    q, k, v = rand(sum(lens_q), 4, head_dim), rand(sum(lens_k), 2, head_dim), rand(sum(lens_k), 2, head_dim)
    poison_allocator((tuple(q.shape), q.dtype), ((4, sum(lens_q)), torch.float32))
    out, lse = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=causal,
                                      softcap=softcap, return_lse=True)
    torch.cuda.synchronize()
    assert lse.shape == (4, sum(lens_q))
    for b in range(len(lens_q)):
        qs, qe, ks, ke = cu_q[b].item(), cu_q[b + 1].item(), cu_k[b].item(), cu_k[b + 1].item()
        if qe == qs:
            continue
        args = (q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], causal, (-1, -1), softcap)
        ref, ref_lse = attention_ref(*args)
        lowp, _ = attention_ref(*args, upcast=False)
        assert_close_to_ref(out[None, qs:qe], ref, lowp, f"varlen seq {b}")
        check_lse(lse[None, :, qs:qe], ref_lse)


@pytest.mark.parametrize("sq,sk", [(300, 300), (200, 450), (450, 200)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_sdpa_drop_in(sq, sk, is_causal):
    q, k, v = rand(2, 8, sq, 128), rand(2, 2, sk, 128), rand(2, 2, sk, 128)
    out = cudadent42.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=is_causal, enable_gqa=True)
    lowp = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)
    assert_close_to_ref(out, ref, lowp, "sdpa")


def test_fwd_is_deterministic():
    q, k, v = rand(2, 2048, 8, 128), rand(2, 2048, 8, 128), rand(2, 2048, 8, 128)
    first = flash_attn_func(q, k, v, causal=True)
    for _ in range(3):
        assert torch.equal(first, flash_attn_func(q, k, v, causal=True)), "moving result: a race"


def test_fwd_bad_inputs():
    q = rand(1, 16, 4, 64)
    with pytest.raises(TypeError, match="bfloat16 or float16"):
        flash_attn_func(q.float(), q.float(), q.float())
    with pytest.raises(TypeError, match="share a dtype"):
        flash_attn_func(q, q.half(), q)
    with pytest.raises(ValueError, match="head dim 80"):
        x = rand(1, 16, 4, 80)
        flash_attn_func(x, x, x)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        flash_attn_func(rand(1, 16, 6, 64), rand(1, 16, 4, 64), rand(1, 16, 4, 64))
    with pytest.raises(cudadent42.UnsupportedDeviceError):
        flash_attn_func(q.cpu(), q.cpu(), q.cpu())
    with pytest.raises(ValueError, match="contiguous last dim"):
        x = rand(1, 16, 4, 128)[..., ::2]
        flash_attn_func(x, x, x)
    with pytest.raises(ValueError, match="4 dims"):
        flash_attn_func(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="int32"):
        flash_attn_varlen_func(q[0], q[0], q[0], torch.tensor([0, 16], device="cuda"),
                               torch.tensor([0, 16], device="cuda"), 16, 16)
    with pytest.raises(NotImplementedError, match="attn_mask"):
        cudadent42.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(16, 16, device="cuda"))


def test_fwd_opcheck():
    q, k, v = rand(2, 100, 4, 64), rand(2, 130, 2, 64), rand(2, 130, 2, 64)
    args = (q, k, v, None, None, 100, 130, 0.125, 1 << 30, 0, 0.0, "causal", "")
    torch.library.opcheck(torch.ops.cudadent42.attn_fwd.default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static",
                                      "test_aot_dispatch_dynamic"))


def test_fwd_torch_compile_and_cuda_graph():
    def block(x, wq):
        q = (x @ wq).view(x.shape[0], x.shape[1], 4, 64)
        return flash_attn_func(q, q, q, causal=True).flatten(2) + x

    x, wq = rand(2, 256, 256), rand(256, 256) * 0.05
    compiled = torch.compile(block, fullgraph=True)
    torch.testing.assert_close(compiled(x, wq), block(x, wq), atol=2e-2, rtol=2e-2)

    block(x, wq)
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        block(x, wq)
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        y = block(x, wq)
    x.copy_(rand(2, 256, 256))
    g.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(y, block(x, wq), atol=0, rtol=0)


@pytest.mark.parametrize("tile", EXPLICIT_TILES, ids=lambda t: f"hd{t['head_dim']}_n{t['block_n']}_{t['mask']}"
                                                       + ("" if t.get("softmax_under_pv", True) else "_pvwait"))
@pytest.mark.parametrize("seqlens", [(257, 4097), (1000, 1000), (4097, 300)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_fwd_explicit_tiles(tile, seqlens):
    sq, sk = seqlens
    d = tile["head_dim"]
    cfg = cudadent42.AttnFwdConfig(stages=2, **tile)
    causal = tile["mask"] == "causal"
    window = (300, 17) if tile["mask"] == "local" else (-1, -1)
    q, k, v = rand(2, sq, 4, d), rand(2, sk, 2, d), rand(2, sk, 2, d)
    out, lse = flash_attn_func(q, k, v, causal=causal, window_size=window, return_lse=True, config=cfg)
    ref, ref_lse = attention_ref(q, k, v, causal, window)
    lowp, _ = attention_ref(q, k, v, causal, window, upcast=False)
    assert_close_to_ref(out, ref, lowp, cfg.name)
    check_lse(lse, ref_lse)


def test_explicit_config_override():
    cfg = cudadent42.AttnFwdConfig(head_dim=128, block_n=64, stages=3, mask="causal")
    q, k, v = rand(1, 300, 2, 128), rand(1, 300, 2, 128), rand(1, 300, 2, 128)
    out = flash_attn_func(q, k, v, causal=True, config=cfg)
    ref, _ = attention_ref(q, k, v, causal=True)
    lowp, _ = attention_ref(q, k, v, causal=True, upcast=False)
    assert_close_to_ref(out, ref, lowp, "config override")
    with pytest.raises(ValueError, match="does not match"):
        flash_attn_func(q, k, v, causal=False, config=cfg)
