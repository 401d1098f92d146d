from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from arlon.config import ARConfig, ARSamplingConfig
from arlon.errors import ConfigError
from arlon.models.ar_transformer import (
    IGNORE_INDEX,
    ARTransformer,
    apply_rotary,
    codes_to_tokens,
    num_visual_tokens,
    sample_codes,
    tokens_to_codes,
)
from arlon.presets import paper, tiny

CFG = dataclasses.replace(tiny().ar, n_layer=2, position="learned")
K = CFG.codebook_size
GRID = (2, 3, 3)
B, L = 2, 24
GREEDY = ARSamplingConfig(temperature=0.0)
# Both position encodings; the factorised one reads the layout on GRID's 3x3 frames.
POSITIONS = {"learned": CFG, "factorised_rope": dataclasses.replace(CFG, position="factorised_rope")}
each_position = pytest.mark.parametrize("position", list(POSITIONS))


def build(seed: int = 0, position: str = "learned") -> ARTransformer:
    torch.manual_seed(seed)
    return ARTransformer(POSITIONS[position], frame_grid=GRID[1:]).eval()


def text(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(B, L, CFG.text_dim, generator=g)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[0, :5] = True
    mask[1, :11] = True
    return emb, mask


def codes(grid=GRID, seed: int = 2) -> torch.Tensor:
    return torch.randint(0, K, (B, *grid), generator=torch.Generator().manual_seed(seed))


# -- layout -------------------------------------------------------------------------------------


def test_token_layout_round_trip():
    Q = codes()
    tokens = codes_to_tokens(Q, K)
    assert tokens.shape == (B, num_visual_tokens(GRID)) == (B, 2 * (9 + 1) + 1)
    assert tokens[0, :9].tolist() == Q[0, 0].flatten().tolist()  # row-major
    assert tokens[:, 9].eq(K).all() and tokens[:, 19].eq(K).all() and tokens[:, 20].eq(K + 1).all()
    assert torch.equal(tokens_to_codes(tokens, GRID, K), Q)


def test_broken_layout_is_rejected():
    tokens = codes_to_tokens(codes(), K)
    for position, value in [(9, 0), (20, K), (3, K)]:
        broken = tokens.clone()
        broken[1, position] = value
        with pytest.raises(ValueError, match="layout"):
            tokens_to_codes(broken, GRID, K)
    with pytest.raises(ValueError, match="grid"):
        tokens_to_codes(tokens[:, :-1], GRID, K)


# -- teacher forcing ------------------------------------------------------------------------------


def test_forward_logits_and_loss_cover_only_visual_tokens():
    model = build()
    emb, mask = text()
    tokens = codes_to_tokens(codes(), K)
    logits, loss = model(emb, mask, tokens, targets=tokens)
    assert logits.shape == (B, tokens.shape[1], CFG.vocab_size)
    expected = F.cross_entropy(logits.reshape(-1, CFG.vocab_size), tokens.reshape(-1))
    torch.testing.assert_close(loss, expected)
    assert model(emb, mask, tokens)[1] is None
    # IGNORE_INDEX drops positions from the loss.
    targets = tokens.clone()
    targets[:, 1:] = IGNORE_INDEX
    _, loss_first = model(emb, mask, tokens, targets=targets)
    torch.testing.assert_close(loss_first, F.cross_entropy(logits[:, 0], tokens[:, 0]))


@each_position
def test_causality(position):
    model = build(position=position)
    emb, mask = text()
    tokens = codes_to_tokens(codes(), K)
    logits, _ = model(emb, mask, tokens)
    i = 7
    changed = tokens.clone()
    changed[:, i:] = codes_to_tokens(codes(seed=9), K)[:, i:]
    logits_changed, _ = model(emb, mask, changed)
    torch.testing.assert_close(logits_changed[:, : i + 1], logits[:, : i + 1])
    assert not torch.allclose(logits_changed[:, i + 1 :], logits[:, i + 1 :])


@each_position
def test_padded_text_is_never_attended(position):
    model = build(position=position)
    emb, mask = text()
    tokens = codes_to_tokens(codes(), K)
    logits, loss = model(emb, mask, tokens, targets=tokens)
    noisy = emb.clone()
    noisy[~mask] = 1e3 * torch.randn(int((~mask).sum()), CFG.text_dim)
    logits_noisy, loss_noisy = model(noisy, mask, tokens, targets=tokens)
    torch.testing.assert_close(logits_noisy, logits)
    torch.testing.assert_close(loss_noisy, loss)
    # The valid text does matter.
    other = emb.clone()
    other[mask] += 1.0
    assert not torch.allclose(model(other, mask, tokens)[0], logits)
    # A caption with no valid token at all still gives finite logits.
    empty_logits, _ = model(emb, torch.zeros_like(mask), tokens)
    assert torch.isfinite(empty_logits).all()


def test_too_many_visual_tokens_is_a_config_error():
    model = build()
    emb, mask = text()
    with pytest.raises(ConfigError, match="max_video_tokens"):
        model.generate(emb, mask, (7, 9, 9), GREEDY)  # 575 tokens > 512


# -- generation ------------------------------------------------------------------------------------


def reference_generate(model, emb, mask, grid, sampling, null_emb=None, null_mask=None, prefix=None):
    """Greedy decoding by full recomputation: one teacher-forced forward per token."""
    N = num_visual_tokens(grid)
    tokens = torch.zeros(B, 0, dtype=torch.long)
    if prefix is not None:
        tokens = codes_to_tokens(prefix, K)[:, :-1]
    t, h, w = grid
    while tokens.shape[1] < N:
        position = tokens.shape[1]
        if position == N - 1:
            next_token = torch.full((B,), K + 1)
        elif (position + 1) % (h * w + 1) == 0:
            next_token = torch.full((B,), K)
        else:
            probe = torch.cat([tokens, torch.zeros(B, 1, dtype=torch.long)], dim=1)  # the probe is never seen
            logits = model(emb, mask, probe)[0][:, -1]
            if null_emb is not None:
                null = model(null_emb.expand(B, -1, -1), null_mask.expand(B, -1), probe)[0][:, -1]
                logits = null + sampling.cfg_scale * (logits - null)
            logits[:, K:] = float("-inf")
            next_token = logits.argmax(-1)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
    return tokens_to_codes(tokens, grid, K)


@each_position
def test_kv_cache_greedy_equals_full_recomputation(position):
    model = build(position=position)
    emb, mask = text()
    Q = model.generate(emb, mask, GRID, GREEDY)
    assert torch.equal(Q, reference_generate(model, emb, mask, GRID, GREEDY))


@each_position
def test_kv_cache_greedy_with_cfg_and_prefix_equals_full_recomputation(position):
    model = build(position=position)
    emb, mask = text()
    null_emb = torch.zeros(1, L, CFG.text_dim)
    null_mask = torch.zeros(1, L, dtype=torch.bool)
    null_mask[0, 0] = True
    sampling = ARSamplingConfig(temperature=0.0, cfg_scale=3.0)
    prefix = codes()[:, :1]
    Q = model.generate(emb, mask, GRID, sampling, prefix_codes=prefix, null_text_emb=null_emb, null_text_mask=null_mask)
    expected = reference_generate(model, emb, mask, GRID, sampling, null_emb, null_mask, prefix)
    assert torch.equal(Q, expected)
    assert torch.equal(Q[:, :1], prefix)


def test_layout_is_valid_even_when_the_model_prefers_separators():
    model = build()
    with torch.no_grad():  # push all probability mass onto <FRAME> and <EOS>
        model.head.weight[K:] = 0.0
        model.head.weight[:K] = 0.0
        model.ln_f.bias.fill_(1.0)
        model.head.weight[K:, :] = 1.0
    emb, mask = text()
    sampling = ARSamplingConfig(temperature=1.5)
    Q = model.generate(emb, mask, (3, 2, 3), sampling, generator=torch.Generator().manual_seed(0))
    assert Q.shape == (B, 3, 2, 3) and Q.dtype == torch.long
    assert ((Q >= 0) & (Q < K)).all()


def test_sampling_is_seeded_and_prefix_is_kept():
    model = build()
    emb, mask = text()
    sampling = ARSamplingConfig(temperature=1.0, top_k=50, top_p=0.9)
    prefix = codes()
    first, again = (
        model.generate(emb, mask, GRID, sampling, torch.Generator().manual_seed(3), prefix_codes=prefix[:, :1])
        for _ in range(2)
    )
    assert torch.equal(first, again)
    assert torch.equal(first[:, :1], prefix[:, :1])
    every_frame = model.generate(emb, mask, GRID, sampling, prefix_codes=prefix)
    assert torch.equal(every_frame, prefix)


def test_cfg_path_runs_and_needs_null_text():
    model = build()
    emb, mask = text()
    sampling = ARSamplingConfig(temperature=1.0, top_k=20, cfg_scale=4.0)
    null_emb = torch.zeros(1, L, CFG.text_dim)
    Q = model.generate(emb, mask, GRID, sampling, generator=torch.Generator().manual_seed(0), null_text_emb=null_emb)
    assert Q.shape == (B, *GRID)
    with pytest.raises(ConfigError, match="null_text_emb"):
        model.generate(emb, mask, GRID, sampling)


def test_sample_codes_filters():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9], [5.0, -1.0, 4.9, 0.0]])
    g = torch.Generator().manual_seed(0)
    assert sample_codes(logits, ARSamplingConfig(temperature=0.0)).tolist() == [1, 0]
    for _ in range(20):
        assert sample_codes(logits, ARSamplingConfig(top_k=1), g).tolist() == [1, 0]
        assert sample_codes(logits, ARSamplingConfig(top_p=0.01), g).tolist() == [1, 0]
        assert set(sample_codes(logits, ARSamplingConfig(top_k=2), g).tolist()) <= {0, 1, 2, 3}
        top2 = sample_codes(logits, ARSamplingConfig(top_k=2), g)
        assert top2[0] in (1, 3) and top2[1] in (0, 2)
        nucleus = sample_codes(logits, ARSamplingConfig(top_p=0.6), g)  # top token alone is < 0.6
        assert nucleus[0] in (1, 3) and nucleus[1] in (0, 2)


def test_bf16_forward_and_generate_on_cpu():
    model = build().to(torch.bfloat16)
    emb, mask = text()
    tokens = codes_to_tokens(codes(), K)
    logits, loss = model(emb, mask, tokens, targets=tokens)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(loss)
    Q = model.generate(emb, mask, GRID, GREEDY)
    assert Q.shape == (B, *GRID)


def test_paper_size_parameter_count():
    # Section 4.1's AR (12 layers, 16 heads, 1024 wide, FFN 4096, dropout 0.1, codebook 2048) with a tied
    # T5-sized vocabulary: within 1% of Table 4's 192M (tests/arlon/test_sizes.py pins the count).
    ar = paper().ar
    assert dataclasses.replace(ar, padded_vocab_size=0, tie_embeddings=False) == ARConfig()
    with torch.device("meta"):
        model = ARTransformer(ar)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - 192e6) / 192e6 < 0.01, count


def test_tied_padded_vocabulary_trains_and_samples_only_visual_tokens():
    """The paper preset's AR layout (padded, tied vocabulary) on a small model: no head entry in the
    state dict, logits over every row, and sampling never leaves the K codes + layout tokens."""
    cfg = ARConfig(n_layer=1, n_head=2, n_embd=32, n_ffn=64, dropout=0.0, codebook_size=8, text_dim=16,
                   max_text_tokens=4, max_video_tokens=64, padded_vocab_size=40, tie_embeddings=True)
    torch.manual_seed(0)
    model = ARTransformer(cfg).eval()
    assert "head.weight" not in model.state_dict() and model.code_emb.weight.shape == (40, 32)
    text, mask = torch.randn(2, 4, 16), torch.ones(2, 4, dtype=torch.bool)
    grid = (2, 2, 2)
    targets = codes_to_tokens(torch.randint(0, 8, (2, *grid)), 8)
    logits, loss = model(text, mask, targets, targets=targets)
    assert logits.shape == (2, targets.shape[1], 40) and torch.isfinite(loss)
    codes = model.generate(text, mask, grid, ARSamplingConfig(), generator=torch.Generator().manual_seed(0))
    assert codes.shape == (2, *grid) and int(codes.max()) < 8


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_greedy_generation_matches_the_cpu():
    """The KV-cache sampler on the GPU: fp32 greedy codes equal the CPU's; bf16 runs and keeps the layout."""
    model = build()
    emb, mask = text()
    expected = model.generate(emb, mask, GRID, GREEDY)
    cuda_model = build()
    cuda_model.load_state_dict(model.state_dict())
    cuda_model.cuda()
    assert torch.equal(cuda_model.generate(emb.cuda(), mask.cuda(), GRID, GREEDY).cpu(), expected)
    codes = cuda_model.to(torch.bfloat16).generate(emb.cuda().bfloat16(), mask.cuda(), GRID, GREEDY)
    assert codes.shape == expected.shape and int(codes.max()) < K


@pytest.mark.parametrize("position", ["learned", "factorised_rope"])
@torch.no_grad()
def test_fixed_shape_decode_step_equals_the_growing_cache(position):
    """The decode step the CUDA graph records (position in a tensor, whole cache behind a mask) gives the
    hidden states of the step that slices the cache to the positions written so far."""
    from arlon.models.ar_transformer import KVCache

    model = build(position=position).eval()
    emb, mask = text()
    L, N = emb.shape[1], num_visual_tokens(GRID)
    tokens = codes_to_tokens(codes(), K)  # (B, N)
    head_dim = model.cfg.n_embd // model.cfg.n_head
    key_valid = torch.cat([mask, mask.new_ones(B, N)], dim=1)
    sliced, fixed = ([KVCache(B, model.cfg.n_head, L + N, head_dim, torch.float32, "cpu") for _ in model.blocks] for _ in range(2))
    prefill = torch.cat([model._embed_text(emb), model._embed_start(B)], dim=1)
    for caches in (sliced, fixed):
        model._run_blocks(prefill, key_valid, 0, caches, model._rotary(L, 0, 1))
    for position in range(6):
        x = model._embed_visual(tokens[:, position : position + 1], position + 1)
        expected = model._run_blocks(x, key_valid, L + position + 1, sliced, model._rotary(0, position + 1, 1))[:, -1]
        slot = torch.full((1,), position + 1, dtype=torch.long)
        torch.testing.assert_close(model._decode_step(tokens[:, position], slot, L, key_valid, fixed), expected)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_decode_samples_what_the_eager_step_samples():
    model = build().cuda().eval()
    emb, mask = text()
    emb, mask = emb.cuda(), mask.cuda()
    sampling = ARSamplingConfig(temperature=0.7)
    graphed = model.generate(emb, mask, GRID, sampling, generator=torch.Generator("cuda").manual_seed(0))
    model.graphed_decode = False
    eager = model.generate(emb, mask, GRID, sampling, generator=torch.Generator("cuda").manual_seed(0))
    assert torch.equal(graphed, eager)
