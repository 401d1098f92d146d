from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from arlon.models.layers import (
    Mlp,
    RMSNorm,
    RotaryEmbedding,
    TimestepEmbedder,
    apply_rope_interleaved,
    position_embedding_2d,
    rope_frequencies,
    t2i_modulate,
    timestep_embedding,
)

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def test_t2i_modulate_is_x_times_one_plus_scale_plus_shift():
    x, shift, scale = torch.randn(3, 2, 5), torch.randn(3, 1, 5), torch.randn(3, 1, 5)
    torch.testing.assert_close(t2i_modulate(x, shift, scale), x + x * scale + shift)


def test_timestep_embedding_is_cos_then_sin_of_the_raw_value():
    t = torch.tensor([0.0, 873.5])
    emb = timestep_embedding(t, 256)
    assert emb.shape == (2, 256) and emb.dtype == torch.float32
    # t = 0: cos = 1 in the first half, sin = 0 in the second.
    torch.testing.assert_close(emb[0, :128], torch.ones(128))
    torch.testing.assert_close(emb[0, 128:], torch.zeros(128))
    k = 5
    freq = math.exp(-math.log(10000) * k / 128)
    assert emb[1, k].item() == pytest.approx(math.cos(873.5 * freq), abs=1e-4)
    assert emb[1, 128 + k].item() == pytest.approx(math.sin(873.5 * freq), abs=1e-4)


def test_timestep_embedder_keys_and_weight_dtype():
    embedder = TimestepEmbedder(16)
    assert set(embedder.state_dict()) == {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"}
    assert embedder.mlp[0].weight.shape == (16, 256)
    out = embedder.to(torch.bfloat16)(torch.tensor([10.0, 999.0]))
    assert out.shape == (2, 16) and out.dtype == torch.bfloat16


def test_rms_norm_normalises_in_fp32_then_scales():
    norm = RMSNorm(8)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = torch.randn(4, 8) * 3
    expected = norm.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), expected)
    assert norm(x.bfloat16()).dtype == torch.float32  # weight (fp32) * bf16 promotes, as in LlamaRMSNorm


def test_mlp_uses_tanh_gelu_and_timm_keys():
    mlp = Mlp(6, 10, 4)
    assert set(mlp.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    x = torch.randn(3, 6)
    expected = mlp.fc2(torch.nn.functional.gelu(mlp.fc1(x), approximate="tanh"))
    torch.testing.assert_close(mlp(x), expected)


def test_rope_frequencies_match_the_reference_table():
    golden = load_file(str(GOLDEN / "stdit3_small.safetensors"))["rope.freqs"]
    torch.testing.assert_close(rope_frequencies(72), golden, rtol=0, atol=0)
    rope = RotaryEmbedding(72)
    assert not rope.freqs.requires_grad and list(rope.state_dict()) == ["freqs"]


def test_rope_rotates_adjacent_pairs_by_position_times_frequency():
    dim, length = 8, 5
    freqs = rope_frequencies(dim)
    x = torch.randn(2, 3, length, dim)
    out = apply_rope_interleaved(x, freqs)
    for p in range(length):
        for i in range(dim // 2):
            angle = p * freqs[i]
            a, b = x[..., p, 2 * i], x[..., p, 2 * i + 1]
            torch.testing.assert_close(out[..., p, 2 * i], a * torch.cos(angle) - b * torch.sin(angle))
            torch.testing.assert_close(out[..., p, 2 * i + 1], b * torch.cos(angle) + a * torch.sin(angle))


def test_rope_scores_depend_only_on_relative_position():
    freqs = rope_frequencies(16)
    q, k = torch.randn(16), torch.randn(16)
    positions = torch.arange(12.0)
    rq = apply_rope_interleaved(q.expand(12, 16), freqs, positions)
    rk = apply_rope_interleaved(k.expand(12, 16), freqs, positions)
    torch.testing.assert_close((rq[7] * rk[3]).sum(), (rq[9] * rk[5]).sum(), rtol=1e-5, atol=1e-5)


def test_position_embedding_2d_matches_golden():
    golden = load_file(str(GOLDEN / "stdit3_small_io.safetensors"))["inter.xmask.pos_emb"]
    pos = position_embedding_2d(4, 6, 144, scale=math.sqrt(64 * 96) / 512, base_size=round(math.sqrt(24)))
    assert pos.shape == (1, 24, 144)
    assert (pos - golden).abs().max() <= 1e-5 * golden.abs().max()


def test_position_embedding_2d_puts_the_w_coordinate_first_sin_before_cos():
    pos = position_embedding_2d(3, 4, 16)[0].view(3, 4, 16)  # (rows, cols, dim)
    # First half depends on the column only, second half on the row only.
    torch.testing.assert_close(pos[0, :, :8], pos[2, :, :8])
    torch.testing.assert_close(pos[:, 0, 8:], pos[:, 3, 8:])
    # Column 1, scale 1, no base_size: [sin(1 * w_k) | cos(1 * w_k)] with w_k = 10000^(-k/4).
    inv_freq = 10000 ** (-torch.arange(4.0) / 4)
    torch.testing.assert_close(pos[0, 1, :8], torch.cat([torch.sin(inv_freq), torch.cos(inv_freq)]))
    with pytest.raises(ValueError):
        position_embedding_2d(2, 2, 18)
