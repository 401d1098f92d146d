from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import load_file, save_file

from arlon.checkpoints.opensora import load_opensora_vae_state_dict
from arlon.config import VAEConfig
from arlon.errors import CheckpointMismatchError, ConfigError, MissingWeightsError
from arlon.models.temporal_vae import CausalConv3d
from arlon.models.video_vae import VIDEO_VAES, OpenSoraVAE, TinyVAE, VideoVAE, build_video_vae
from arlon.presets import tiny

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
# The reduced-width VideoAutoencoderPipeline of tests/golden/vae_small.json (same 517 keys, real shift/scale).
SMALL_CFG = VAEConfig(
    spatial_channels=(8, 16, 32, 32), spatial_norm_groups=2, temporal_filters=8, temporal_norm_groups=2
)


def assert_golden(ours: torch.Tensor, golden: torch.Tensor) -> None:
    """tests/golden/README.md tolerance: |ours - golden| <= 1e-5 * max|golden| + 1e-5 * |golden|."""
    assert ours.shape == golden.shape
    tolerance = 1e-5 * golden.abs().max() + 1e-5 * golden.abs()
    error = (ours - golden).abs()
    worst = error.max().item()
    assert (error <= tolerance).all(), f"max error {worst:.3e} (golden max {golden.abs().max().item():.3e})"


@pytest.fixture(scope="module")
def small_vae() -> OpenSoraVAE:
    return OpenSoraVAE.from_pretrained(SMALL_CFG, GOLDEN / "vae_small.safetensors")


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "vae_small_io.safetensors"))


# ----------------------------------------------------------------------------------------------
# Golden parity with the reference Open-Sora v1.2 pipeline (small widths)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [17, 34])
@torch.no_grad()
def test_golden_deterministic_encode(small_vae, io, frames):
    video = io[f"video{frames}"]
    assert_golden(small_vae.encode_spatial(video), io[f"enc{frames}_mode.x_z"])
    latent = small_vae.encode(video)
    assert latent.shape[2:] == small_vae.latent_size(frames, 32, 32)
    assert_golden(latent, io[f"enc{frames}_mode"])


@pytest.mark.parametrize(
    "latent_name, frames, golden_name",
    [("enc17_mode", 17, "rec17_mode"), ("enc34_mode", 34, "rec34_mode"), ("enc17_sample", 17, "rec17_sample")],
)
@torch.no_grad()
def test_golden_decode_of_encode(small_vae, io, latent_name, frames, golden_name):
    assert_golden(small_vae.decode(io[latent_name], num_frames=frames), io[golden_name])


@torch.no_grad()
def test_golden_decode_of_given_latent(small_vae, io):
    z = small_vae.denormalize_latent(io["z_given"])
    assert_golden(small_vae.decode_temporal(z, num_frames=17), io["dec_given.x_z"])
    assert_golden(small_vae.decode(io["z_given"], num_frames=17), io["dec_given"])


@pytest.mark.parametrize("frames", [17, 34])
@torch.no_grad()
def test_golden_sampled_encode(small_vae, io, frames):
    video, golden = io[f"video{frames}"], io[f"enc{frames}_sample"]
    # Replaying the recorded posterior noise of both stages.
    x_z = small_vae.encode_spatial(video, sample=True, noise=io[f"enc{frames}_sample.eps_spatial"])
    z = small_vae.encode_temporal(x_z, sample=True, noise=io[f"enc{frames}_sample.eps_temporal"])
    assert_golden(small_vae.normalize_latent(z), golden)
    # The reference ran torch.manual_seed(2024) and drew per 2D micro-batch, then per temporal chunk: a generator
    # seeded alike, drawn in the same order and shapes, reproduces its sample.
    latent = small_vae.encode(video, sample=True, generator=torch.Generator().manual_seed(2024))
    assert_golden(latent, golden)
    assert not torch.allclose(latent, io[f"enc{frames}_mode"], atol=1e-2)


@pytest.mark.parametrize("time_stride", [1, 2])
@torch.no_grad()
def test_causal_conv_never_sees_later_frames(time_stride):
    """Output frame t of a CausalConv3d depends on input frames <= t * stride only (zero padding in front)."""
    conv = CausalConv3d(2, 3, 3, time_stride=time_stride)
    x = torch.randn(1, 2, 8, 5, 5)
    edited = x.clone()
    edited[:, :, 5:] = torch.randn(1, 2, 3, 5, 5)
    before, after = conv(x), conv(edited)
    assert before.shape == (1, 3, 8 // time_stride, 5, 5)
    unaffected = {1: 5, 2: 2}[time_stride]  # outputs j whose window ends (at frame j * stride + stride - 1) before 5
    torch.testing.assert_close(before[:, :, :unaffected], after[:, :, :unaffected], rtol=0, atol=0)
    assert not torch.allclose(before[:, :, unaffected:], after[:, :, unaffected:])


@torch.no_grad()
def test_micro_batch_size_does_not_change_the_result(io):
    cfg = dataclasses.replace(SMALL_CFG, micro_batch_size=3)
    vae = OpenSoraVAE.from_pretrained(cfg, GOLDEN / "vae_small.safetensors")
    assert_golden(vae.encode(io["video17"]), io["enc17_mode"])


def test_decode_rejects_a_frame_count_that_does_not_fit_the_latent(small_vae, io):
    with pytest.raises(ConfigError, match="latent frames"):
        small_vae.decode(io["enc17_mode"], num_frames=34)


# ----------------------------------------------------------------------------------------------
# Paper size: the real checkpoint layout
# ----------------------------------------------------------------------------------------------


def test_paper_size_state_dict_matches_the_reference_layout():
    reference = json.loads((GOLDEN / "opensora_v1_2_vae_state_dict.json").read_text())
    with torch.device("meta"):
        vae = OpenSoraVAE(VAEConfig())
    ours = [(name, list(tensor.shape)) for name, tensor in vae.state_dict().items()]
    assert ours == [(entry["name"], entry["shape"]) for entry in reference["entries"]]  # names, shapes and order
    assert len(ours) == reference["num_entries"] == 517
    # num_parameters counts parameters only; the 8 elements of the scale/shift buffers are not among them.
    assert sum(p.numel() for p in vae.parameters()) == reference["num_parameters"] == 393_341_007
    assert sum(p.numel() for p in vae.spatial_vae.parameters()) == reference["num_parameters_spatial_vae"]
    assert sum(p.numel() for p in vae.temporal_vae.parameters()) == reference["num_parameters_temporal_vae"]
    assert [name for name, _ in vae.named_buffers()] == reference["persistent_buffers"]


def test_latent_size_formula():
    with torch.device("meta"):
        vae = OpenSoraVAE(VAEConfig())
    # Open-Sora v1.2's `VideoAutoencoderPipeline.get_latent_size` (docs/opensora-v1.2-notes.md, 'Frame counts')
    table = {1: 1, 16: 4, 17: 5, 32: 9, 34: 10, 51: 15, 68: 20, 102: 30, 204: 60, 408: 120}
    assert {frames: vae.latent_size(frames, 32, 32)[0] for frames in table} == table
    assert vae.latent_size(51, 240, 426) == (15, 30, 53)
    assert vae.latent_size(68, 512, 512) == (20, 64, 64)
    assert vae.latent_channels == 4


def test_shift_and_scale_are_the_reference_constants(small_vae):
    """The golden checkpoint kept scale/shift as the reference constructs them; ours must start equal."""
    fresh = OpenSoraVAE(SMALL_CFG)
    assert torch.equal(fresh.scale, small_vae.scale) and torch.equal(fresh.shift, small_vae.shift)
    assert fresh.scale.shape == (1, 4, 1, 1, 1)


# ----------------------------------------------------------------------------------------------
# Loading checkpoints in the real file layout
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written_checkpoint(tmp_path_factory) -> tuple[Path, OpenSoraVAE]:
    """A small random OpenSoraVAE saved as <dir>/model.safetensors, like the hub repo."""
    torch.manual_seed(3)
    source = OpenSoraVAE(SMALL_CFG).eval()
    directory = tmp_path_factory.mktemp("OpenSora-VAE-v1.2")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(directory / "model.safetensors"))
    return directory, source


@torch.no_grad()
def test_from_pretrained_directory_and_file(written_checkpoint):
    directory, source = written_checkpoint
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    for path in (directory, directory / "model.safetensors", str(directory)):
        loaded = OpenSoraVAE.from_pretrained(SMALL_CFG, path)
        assert not loaded.training
        loaded_state = loaded.state_dict()
        for name, tensor in source.state_dict().items():
            assert torch.equal(loaded_state[name], tensor), name
        torch.testing.assert_close(loaded.encode(video), source.encode(video))
    via_config = OpenSoraVAE.from_pretrained(dataclasses.replace(SMALL_CFG, pretrained=str(directory)))
    assert torch.equal(via_config.scale, source.scale)


def test_from_pretrained_training_checkpoint_nested_in_pt(written_checkpoint, tmp_path):
    _, source = written_checkpoint
    torch.save({"state_dict": source.state_dict(), "step": 7}, tmp_path / "model.pt")
    loaded = OpenSoraVAE.from_pretrained(SMALL_CFG, tmp_path / "model.pt")
    key = "temporal_vae.decoder.conv_out.conv.weight"
    assert torch.equal(loaded.state_dict()[key], source.state_dict()[key])


def test_from_pretrained_hugging_face_id_from_the_offline_cache(written_checkpoint, tmp_path, monkeypatch):
    directory, source = written_checkpoint
    repo = tmp_path / "models--hpcai-tech--OpenSora-VAE-v1.2"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    state = load_opensora_vae_state_dict("hpcai-tech/OpenSora-VAE-v1.2", cache_dir=tmp_path)
    assert set(state) == set(source.state_dict())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    loaded = OpenSoraVAE.from_pretrained(SMALL_CFG, "hpcai-tech/OpenSora-VAE-v1.2")
    key = "spatial_vae.module.encoder.conv_in.weight"
    assert torch.equal(loaded.state_dict()[key], source.state_dict()[key])


def test_from_pretrained_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError, match="no such file"):
        OpenSoraVAE.from_pretrained(SMALL_CFG, tmp_path / "nowhere")
    with pytest.raises(MissingWeightsError, match="OpenSora-VAE-v1.2"):
        OpenSoraVAE.from_pretrained(SMALL_CFG, "hpcai-tech/OpenSora-VAE-v1.2")
    with pytest.raises(MissingWeightsError, match="model.safetensors"):
        OpenSoraVAE.from_pretrained(SMALL_CFG, tmp_path)  # a directory without weights
    with pytest.raises(MissingWeightsError, match="vae.pretrained is not set"):
        OpenSoraVAE.from_pretrained(SMALL_CFG)


def test_from_pretrained_mismatched_checkpoint(written_checkpoint, tmp_path):
    directory, source = written_checkpoint
    state = {k: v.contiguous() for k, v in source.state_dict().items() if k != "temporal_vae.quant_conv.conv.bias"}
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="1 missing: temporal_vae.quant_conv.conv.bias"):
        OpenSoraVAE.from_pretrained(SMALL_CFG, tmp_path)
    wider = dataclasses.replace(SMALL_CFG, temporal_filters=16)
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        OpenSoraVAE.from_pretrained(wider, directory)


# ----------------------------------------------------------------------------------------------
# Every registered VAE: the VideoVAE contract
# ----------------------------------------------------------------------------------------------

CONTRACT_CONFIGS = {"opensora_v1_2": SMALL_CFG, "tiny": tiny().vae}


def test_every_registered_kind_is_covered():
    assert set(VIDEO_VAES.keys()) == set(CONTRACT_CONFIGS)


@pytest.mark.parametrize("kind", VIDEO_VAES.keys())
@torch.no_grad()
def test_contract_shapes(kind):
    cfg = dataclasses.replace(CONTRACT_CONFIGS[kind], kind=kind)
    vae = build_video_vae(cfg).eval()
    assert isinstance(vae, VideoVAE) and isinstance(vae, VIDEO_VAES.get(kind))
    for frames in (1, 6, 16):
        video = torch.rand(2, 3, frames, 32, 32) * 2 - 1
        latent = vae.encode(video)
        assert latent.shape == (2, vae.latent_channels, *vae.latent_size(frames, 32, 32))
        assert vae.decode(latent, num_frames=frames).shape == video.shape
    generator_a, generator_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    sample_a = vae.encode(video, sample=True, generator=generator_a)
    assert torch.equal(sample_a, vae.encode(video, sample=True, generator=generator_b))
    assert not torch.equal(sample_a, latent)


@pytest.mark.parametrize("kind", VIDEO_VAES.keys())
@torch.no_grad()
def test_contract_bf16_forward_on_cpu(kind):
    cfg = dataclasses.replace(CONTRACT_CONFIGS[kind], kind=kind)
    vae = build_video_vae(cfg).to(torch.bfloat16).eval()
    video = torch.rand(1, 3, 8, 32, 32) * 2 - 1  # float32 input is cast to the weights' dtype
    latent = vae.encode(video, sample=True, generator=torch.Generator().manual_seed(0))
    out = vae.decode(latent, num_frames=8)
    assert latent.dtype == out.dtype == torch.bfloat16
    assert out.shape == video.shape and torch.isfinite(out.float()).all()


def test_unknown_kind():
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        build_video_vae(VAEConfig(kind="tiyn"))


def test_opensora_needs_four_latent_channels():
    with pytest.raises(ConfigError, match="latent_channels"):
        OpenSoraVAE(dataclasses.replace(SMALL_CFG, latent_channels=8))


# ----------------------------------------------------------------------------------------------
# TinyVAE
# ----------------------------------------------------------------------------------------------


def tiny_video(batch: int = 2, frames: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, frames, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_tiny_shapes_at_the_tiny_preset():
    preset = tiny()
    vae = build_video_vae(preset.vae)
    assert isinstance(vae, TinyVAE)
    video = tiny_video()
    latent = vae.encode(video)
    assert latent.shape == (2, 4, 8, 8, 8)
    assert vae.latent_size(preset.video.num_frames, preset.video.height, preset.video.width) == (8, 8, 8)
    assert vae.decode(latent, 16).shape == video.shape
    assert vae.latent_size(15, 32, 32) == (8, 8, 8) and vae.decode(vae.encode(video[:, :, :15]), 15).shape[2] == 15


def moving_waves(frames: int) -> torch.Tensor:
    """A smooth travelling sine pattern per channel, (1, 3, frames, 32, 32) in [-0.8, 0.8]: compressible."""
    t = torch.arange(frames).view(frames, 1, 1) / frames
    y = torch.linspace(0, 1, 32).view(1, 32, 1)
    x = torch.linspace(0, 1, 32).view(1, 1, 32)
    return 0.8 * torch.stack([torch.sin(2 * math.pi * (x + 0.5 * y - t) + channel) for channel in range(3)])[None]


def test_tiny_loss_is_finite_and_trains():
    vae = build_video_vae(tiny().vae)
    video = moving_waves(frames=8)
    loss = vae.loss(video, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss.total) and loss.kl >= 0
    torch.testing.assert_close(loss.total, loss.reconstruction + vae.kl_weight * loss.kl)
    loss.total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vae.parameters())
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    first = loss.total.item()
    for _ in range(12):
        optimizer.zero_grad()
        loss = vae.loss(video, generator=torch.Generator().manual_seed(0))
        loss.total.backward()
        optimizer.step()
    assert loss.total.item() < 0.5 * first


@torch.no_grad()
def test_tiny_latent_normalization():
    vae = build_video_vae(tiny().vae).eval()
    video = tiny_video()
    raw = vae.encode(video)
    vae.set_latent_normalization(torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([2.0, 2.0, 4.0, 4.0]))
    normalized = vae.encode(video)
    torch.testing.assert_close(normalized * vae.scale + vae.shift, raw)
    torch.testing.assert_close(vae.decode(normalized, 16), vae.decode_unnormalized(raw, 16))


def test_tiny_rejects_sizes_that_do_not_divide():
    vae = build_video_vae(tiny().vae)
    with pytest.raises(ConfigError, match="spatial_compression"):
        vae.encode(torch.zeros(1, 3, 4, 30, 32))
    with pytest.raises(ConfigError, match="power of two"):
        TinyVAE(dataclasses.replace(tiny().vae, temporal_compression=3))
