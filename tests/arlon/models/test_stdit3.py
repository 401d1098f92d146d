from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from arlon.checkpoints.opensora import fit_null_caption, load_stdit3_state_dict
from arlon.config import BackboneConfig
from arlon.errors import CheckpointMismatchError, MissingWeightsError
from arlon.models.stdit3 import BlockContext, STDiT3, STDiT3Block
from arlon.presets import tiny

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
GOLDEN_CONFIG = BackboneConfig(hidden_size=144, depth=3, num_heads=2, caption_channels=64, model_max_length=20)
SMALL_CONFIG = BackboneConfig(hidden_size=32, depth=2, num_heads=2, caption_channels=16, model_max_length=8)


def assert_matches_golden(ours: torch.Tensor, golden: torch.Tensor, name: str) -> None:
    tolerance = 1e-5 * golden.abs().max() + 1e-5 * golden.abs()
    error = (ours - golden).abs()
    assert ours.shape == golden.shape, name
    assert bool((error <= tolerance).all()), f"{name}: max error {error.max():.3g}, max {golden.abs().max():.3g}"


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-zero weights everywhere, so zero-initialised layers cannot hide a difference."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name == "rope.freqs":
                continue
            fan_in = tensor[0].numel() if tensor.ndim >= 2 else 1
            scale = 0.3 if "scale_shift_table" in name else (1 / fan_in**0.5 if tensor.ndim >= 2 else 0.1)
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale + (1.0 if "norm" in name else 0.0))
    return model


def small_inputs(cfg: BackboneConfig, batch: int = 2, frames: int = 3, height: int = 6, width: int = 10) -> dict:
    generator = torch.Generator().manual_seed(7)
    mask = torch.zeros(batch, cfg.model_max_length, dtype=torch.long)
    for b in range(batch):
        mask[b, : 3 + 2 * b] = 1
    return dict(
        x=torch.randn(batch, cfg.in_channels, frames, height, width, generator=generator),
        timestep=torch.tensor([900.0, 35.5, 400.0, 1.0][:batch]),
        y=torch.randn(batch, 1, cfg.model_max_length, cfg.caption_channels, generator=generator),
        mask=mask,
        fps=torch.tensor([24.0]),
        height=torch.tensor([8.0 * height] * batch),
        width=torch.tensor([8.0 * width] * batch),
    )


@pytest.fixture(scope="module")
def golden_model() -> STDiT3:
    model = STDiT3(GOLDEN_CONFIG).eval()
    model.load_state_dict(load_file(str(GOLDEN / "stdit3_small.safetensors")), strict=True)
    return model


@pytest.fixture(scope="module")
def golden_io() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "stdit3_small_io.safetensors"))


@pytest.fixture(scope="module")
def small_model() -> STDiT3:
    torch.manual_seed(0)
    return randomize_(STDiT3(SMALL_CONFIG), seed=3).eval()


# --- 1. golden parity with the reference Open-Sora v1.2 STDiT3 --------------------------------------


@pytest.mark.parametrize(
    "call, output",
    [("xmask", "out_xmask"), ("nomask", "out_nomask"), ("nocapmask", "out_nocapmask")],
)
@torch.no_grad()
def test_forward_matches_golden(golden_model, golden_io, call, output):
    io = golden_io
    kwargs = dict(fps=io["fps"], height=io["height"], width=io["width"])
    if call != "nocapmask":
        kwargs["mask"] = io["mask"]
    if call == "xmask":
        kwargs["x_mask"] = io["x_mask"]
    out = golden_model(io["x"], io["timestep"], io["y"], **kwargs)
    assert out.dtype == torch.float32
    assert_matches_golden(out, io[output], output)


@torch.no_grad()
def test_intermediates_match_golden(golden_model, golden_io):
    io = golden_io
    captured: dict[str, list[torch.Tensor]] = {}
    names = ["t_embedder", "fps_embedder", "t_block", "y_embedder", "x_embedder", "final_layer"]
    names += [f"{kind}_blocks.{i}" for i in range(3) for kind in ("spatial", "temporal")]
    hooks = [
        golden_model.get_submodule(name).register_forward_hook(
            lambda module, args, out, name=name: captured.setdefault(name, []).append(out)
        )
        for name in names
    ]
    try:
        golden_model(
            io["x"], io["timestep"], io["y"], mask=io["mask"], x_mask=io["x_mask"],
            fps=io["fps"], height=io["height"], width=io["width"],
        )
    finally:
        for hook in hooks:
            hook.remove()
    ours = {
        "t_emb": captured["t_embedder"][0],
        "t0_emb": captured["t_embedder"][1],
        "fps_emb": captured["fps_embedder"][0],
        "t_mlp": captured["t_block"][0],
        "t0_mlp": captured["t_block"][1],
        "y_proj": captured["y_embedder"][0],
        "x_embedder": captured["x_embedder"][0],
        "final_layer": captured["final_layer"][0],
    }
    ours["t"] = ours["t_emb"] + ours["fps_emb"]
    ours.update({name: captured[name][0] for name in names if "_blocks." in name})
    for name, tensor in ours.items():
        assert_matches_golden(tensor, io[f"inter.xmask.{name}"], name)


@torch.no_grad()
def test_all_true_x_mask_is_bitwise_no_mask(golden_model, golden_io):
    io = golden_io
    kwargs = dict(mask=io["mask"], fps=io["fps"], height=io["height"], width=io["width"])
    without = golden_model(io["x"], io["timestep"], io["y"], **kwargs)
    all_true = golden_model(io["x"], io["timestep"], io["y"], x_mask=torch.ones(2, 5, dtype=torch.bool), **kwargs)
    assert torch.equal(without, all_true)


# --- 2. paper-size state-dict layout ---------------------------------------------------------------


def test_paper_size_state_dict_matches_reference_layout():
    reference = json.loads((GOLDEN / "opensora_v1_2_stdit3_xl2_state_dict.json").read_text())
    with torch.device("meta"):
        model = STDiT3(BackboneConfig())
    ours = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    expected = {entry["name"]: entry["shape"] for entry in reference["entries"]}
    assert len(ours) == reference["num_entries"] == 973
    assert ours == expected
    assert sum(p.numel() for p in model.parameters()) == reference["num_parameters"] == 1_207_643_972
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == reference["num_parameters_requires_grad"]
    assert [name for name, p in model.named_parameters() if not p.requires_grad] == ["rope.freqs"]
    assert [name for name, _ in model.named_buffers()] == reference["persistent_buffers"]  # y_embedding only


# --- 3. loading checkpoints in Open-Sora's layout -----------------------------------------------------


@torch.no_grad()
def test_from_pretrained_loads_real_layouts_and_reproduces_outputs(small_model, tmp_path):
    inputs = small_inputs(SMALL_CONFIG)
    expected = small_model(**inputs)
    state = {name: tensor.clone() for name, tensor in small_model.state_dict().items()}

    single_file = tmp_path / "stdit3.safetensors"
    save_file(state, str(single_file))
    directory = tmp_path / "OpenSora-STDiT-v3"
    directory.mkdir()
    save_file(state, str(directory / "model.safetensors"))
    nested = tmp_path / "epoch0-global_step100.pt"
    torch.save({"model": state, "step": torch.tensor(100)}, nested)

    for source in (single_file, directory, nested):
        loaded = STDiT3.from_pretrained(SMALL_CONFIG, path=source).eval()
        assert torch.equal(loaded(**inputs), expected), source
        assert not loaded.rope.freqs.requires_grad
    via_config = STDiT3.from_pretrained(dataclasses.replace(SMALL_CONFIG, pretrained=str(directory))).eval()
    assert torch.equal(via_config(**inputs), expected)


def test_loader_unwraps_ema_and_shards_and_applies_reparameter(small_model, tmp_path):
    state = small_model.state_dict()
    ema = tmp_path / "ema.pt"
    torch.save({"ema": {f"module.{k}": v for k, v in state.items()}, "pos_embed_temporal": torch.zeros(3)}, ema)
    assert set(load_stdit3_state_dict(ema)) == set(state)

    shard_dir = tmp_path / "sharded"
    shard_dir.mkdir()
    names = list(state)
    halves = {"part-1.safetensors": names[: len(names) // 2], "part-2.safetensors": names[len(names) // 2 :]}
    weight_map = {}
    for shard, keys in halves.items():
        save_file({k: state[k].contiguous() for k in keys}, str(shard_dir / shard))
        weight_map.update({k: shard for k in keys})
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    extra = dict(state, pos_embed=torch.zeros(1, 4, SMALL_CONFIG.hidden_size))
    save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp_path / "with_pos_embed.safetensors"))

    booster_dir = tmp_path / "epoch0-global_step100"
    (booster_dir / "model").mkdir(parents=True)
    save_file(state, str(booster_dir / "model" / "model.safetensors"))
    assert set(load_stdit3_state_dict(booster_dir)) == set(state)

    loaded = load_stdit3_state_dict(shard_dir, model_max_length=12)
    assert set(loaded) == set(state)
    null = loaded["y_embedder.y_embedding"]
    assert null.shape == (12, SMALL_CONFIG.caption_channels)
    torch.testing.assert_close(null[:8], state["y_embedder.y_embedding"])
    torch.testing.assert_close(null[8:], state["y_embedder.y_embedding"][-1:].expand(4, -1))
    assert set(load_stdit3_state_dict(tmp_path / "with_pos_embed.safetensors")) == set(state)
    assert fit_null_caption(torch.arange(6.0).view(3, 2), 2).tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_loader_resolves_a_hugging_face_id_from_the_local_cache(small_model, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--hpcai-tech--OpenSora-STDiT-v3"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file(small_model.state_dict(), str(snapshot / "model.safetensors"))
    loaded = load_stdit3_state_dict("hpcai-tech/OpenSora-STDiT-v3", cache_dir=tmp_path / "hub")
    assert set(loaded) == set(small_model.state_dict())
    with pytest.raises(MissingWeightsError, match="huggingface-cli download"):
        load_stdit3_state_dict("hpcai-tech/OpenSora-STDiT-v3", cache_dir=tmp_path / "empty-hub")


def test_file_without_tensors_raises_checkpoint_mismatch_error(tmp_path):
    path = tmp_path / "config.pt"
    torch.save({"config": {"depth": 28}}, path)
    with pytest.raises(CheckpointMismatchError, match="no state dict found"):
        load_stdit3_state_dict(path)


def test_missing_weights_raise_missing_weights_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="does-not-exist"):
        STDiT3.from_pretrained(SMALL_CONFIG, path=tmp_path / "does-not-exist.safetensors")
    with pytest.raises(MissingWeightsError, match="backbone.pretrained"):
        STDiT3.from_pretrained(SMALL_CONFIG)
    with pytest.raises(MissingWeightsError, match="model.safetensors"):
        STDiT3.from_pretrained(SMALL_CONFIG, path=tmp_path)  # a directory without weights


def test_mismatched_checkpoint_raises_checkpoint_mismatch_error(small_model, tmp_path):
    state = dict(small_model.state_dict())
    state["final_layer.linear.weight"] = torch.zeros(5, SMALL_CONFIG.hidden_size)
    del state["temporal_blocks.1.mlp.fc2.bias"]
    state["semantic_adapters.0.weight"] = torch.zeros(2)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointMismatchError) as err:
        STDiT3.from_pretrained(SMALL_CONFIG, path=path)
    message = str(err.value)
    assert "final_layer.linear.weight (5, 32)" in message
    assert "temporal_blocks.1.mlp.fc2.bias" in message and "semantic_adapters.0.weight" in message
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        STDiT3.from_pretrained(dataclasses.replace(SMALL_CONFIG, hidden_size=48), path=tmp_path / "bad.safetensors")


# --- 4. shapes, injection hook, captions, CFG ---------------------------------------------------------


@torch.no_grad()
def test_tiny_preset_shapes_and_injection_hook():
    cfg = tiny().backbone
    model = randomize_(STDiT3(cfg), seed=1).eval()
    assert len(model.spatial_blocks) == len(model.temporal_blocks) == 28
    inputs = small_inputs(cfg, batch=2, frames=2, height=5, width=6)  # odd H is padded, then cropped
    calls: list[tuple[int, tuple[int, ...], BlockContext]] = []

    def identity(i: int, x: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        calls.append((i, tuple(x.shape), ctx))
        return x

    plain = model(**inputs)
    hooked = model(**inputs, injection=identity)
    assert plain.shape == (2, cfg.out_channels, 2, 5, 6) and plain.dtype == torch.float32
    assert torch.equal(plain, hooked)
    assert [i for i, _, _ in calls] == list(range(28))
    ctx = calls[0][2]
    assert calls[0][1] == (2, 2 * 3 * 3, 64) and (ctx.T, ctx.S) == (2, 9)
    assert ctx.y.shape == (2, cfg.model_max_length, 64) and ctx.y_mask.dtype == torch.bool
    assert ctx.y_mask.sum(1).tolist() == [3, 5] and ctx.t_mlp.shape == (2, 6 * 64) and ctx.x_mask is None

    def nudge_pair_5(i, x, ctx):
        return x + 0.1 if i == 5 else x

    assert not torch.allclose(model(**inputs, injection=nudge_pair_5), plain)


@torch.no_grad()
def test_block_runs_standalone_with_a_context(small_model):
    cfg = SMALL_CONFIG
    block = randomize_(STDiT3Block(cfg, temporal=True), seed=2)
    T, S = 3, 4
    ctx = BlockContext(
        y=torch.randn(2, 5, cfg.hidden_size), y_mask=torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]).bool(),
        t_mlp=torch.randn(2, 6 * cfg.hidden_size), t0_mlp=torch.randn(2, 6 * cfg.hidden_size),
        x_mask=torch.tensor([[False, True, True], [True, True, True]]), T=T, S=S,
    )
    x = torch.randn(2, T * S, cfg.hidden_size)
    out = block(x, ctx)
    assert out.shape == x.shape
    # The default RoPE table is the model's rope.freqs.
    torch.testing.assert_close(out, block(x, dataclasses.replace(ctx, rope_freqs=small_model.rope.freqs)))
    # Sample 1 has no clean frame: its output ignores t0_mlp.
    other_t0 = dataclasses.replace(ctx, t0_mlp=torch.randn(2, 6 * cfg.hidden_size))
    assert torch.equal(block(x, other_t0)[1], out[1]) and not torch.allclose(block(x, other_t0)[0], out[0])


@torch.no_grad()
def test_padded_caption_tokens_are_ignored_and_cfg_mask_is_repeated(small_model):
    inputs = small_inputs(SMALL_CONFIG)
    out = small_model(**inputs)
    changed_padding = inputs["y"].clone()
    changed_padding[0, :, 3:] += 5.0  # sample 0 has 3 valid tokens
    assert torch.equal(small_model(**dict(inputs, y=changed_padding)), out)
    changed_valid = inputs["y"].clone()
    changed_valid[0, :, 2] += 5.0
    assert not torch.allclose(small_model(**dict(inputs, y=changed_valid))[0], out[0])

    # A caption without valid tokens contributes nothing (and no NaN).
    no_text = inputs["mask"].clone()
    no_text[0] = 0
    out_no_text = small_model(**dict(inputs, mask=no_text))
    assert torch.isfinite(out_no_text).all()
    assert torch.equal(small_model(**dict(inputs, mask=no_text, y=changed_valid + 1.0))[0], out_no_text[0])

    # CFG batch: [cond, null] with the conditional mask only; equals passing the repeated mask.
    doubled = dict(
        inputs,
        x=inputs["x"].repeat(2, 1, 1, 1, 1),
        timestep=inputs["timestep"].repeat(2),
        y=torch.cat([inputs["y"], small_model.null_caption(2)]),
    )
    cfg_out = small_model(**doubled)
    assert torch.equal(cfg_out, small_model(**dict(doubled, mask=inputs["mask"].repeat(2, 1))))
    torch.testing.assert_close(cfg_out[:2], out)


@torch.no_grad()
def test_null_caption_and_caption_dropout(small_model):
    null = small_model.null_caption(3)
    assert null.shape == (3, 1, SMALL_CONFIG.model_max_length, SMALL_CONFIG.caption_channels)
    assert torch.equal(null[2, 0], small_model.y_embedder.y_embedding)
    y = torch.randn(2, 1, SMALL_CONFIG.model_max_length, SMALL_CONFIG.caption_channels)
    embedder = small_model.y_embedder
    forced = embedder(y, force_drop_ids=torch.tensor([1, 0]))
    torch.testing.assert_close(forced[0], embedder.y_proj(null[0]))
    torch.testing.assert_close(forced[1], embedder.y_proj(y[1]))
    assert torch.equal(embedder(y), embedder.y_proj(y))  # eval: no dropout
    try:
        embedder.train()
        embedder.dropout_prob = 1.0
        torch.testing.assert_close(embedder(y), embedder.y_proj(null[:2]))
    finally:
        embedder.dropout_prob = SMALL_CONFIG.class_dropout_prob
        embedder.eval()


def test_gradient_checkpointing_gives_the_same_gradients(small_model):
    inputs = small_inputs(SMALL_CONFIG)
    shift = torch.zeros(1, requires_grad=True)

    def inject(i, x, ctx):
        return x + shift if i == 0 else x

    grads = []
    for use_checkpointing in (False, True):
        small_model.grad_checkpointing = use_checkpointing
        shift.grad = None
        small_model(**inputs, injection=inject).square().mean().backward()
        grads.append(shift.grad.clone())
    small_model.grad_checkpointing = False
    small_model.zero_grad(set_to_none=True)
    assert grads[0].abs() > 0
    torch.testing.assert_close(grads[0], grads[1])


# --- 5. bf16 and CUDA ---------------------------------------------------------------------------------


@torch.no_grad()
def test_bf16_forward_is_close_to_fp32(small_model):
    inputs = small_inputs(SMALL_CONFIG)
    inputs["x_mask"] = torch.tensor([[False, True, True], [True, True, True]])
    reference = small_model(**inputs)
    bf16_model = STDiT3(SMALL_CONFIG).eval()
    bf16_model.load_state_dict(small_model.state_dict())
    bf16_model.to(torch.bfloat16)
    try:
        out = bf16_model(**inputs)
    except RuntimeError as err:  # pragma: no cover - depends on the CPU build of torch
        pytest.skip(f"torch CPU lacks a bf16 op: {err}")
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - reference).abs().max() <= 0.1 * reference.abs().max()


@torch.no_grad()
def test_one_caption_length_drops_padding_and_the_mask(golden_model, golden_io):
    """At inference a batch whose captions share one length attends to its valid tokens without a mask
    (SDPA's flash kernel): the same output as the masked path over every column, to rounding."""
    io = golden_io
    length = int(io["mask"][0].sum())
    same = io["mask"][:1].expand_as(io["mask"]).clone()  # both samples: the first caption's length
    kwargs = dict(fps=io["fps"], height=io["height"], width=io["width"])
    contexts = []
    hook = lambda i, x, ctx: contexts.append(ctx) or x  # noqa: E731
    assert golden_model.unmasked_captions is None  # by default only on CUDA: the CPU keeps its exact path
    golden_model(io["x"], io["timestep"], io["y"], mask=same, injection=hook, **kwargs)
    assert contexts[-1].y_mask is not None
    golden_model.unmasked_captions = True
    try:
        fast = golden_model(io["x"], io["timestep"], io["y"], mask=same, injection=hook, **kwargs)
    finally:
        golden_model.unmasked_captions = None
    fast_context = contexts[-1]
    assert fast_context.y_mask is None and fast_context.y.shape[1] == length
    golden_model.train()  # training keeps the masked path over all columns (caption dropout off here)
    dropout, golden_model.y_embedder.dropout_prob = golden_model.y_embedder.dropout_prob, 0.0
    try:
        masked = golden_model(io["x"], io["timestep"], io["y"], mask=same, injection=hook, **kwargs)
    finally:
        golden_model.eval()
        golden_model.y_embedder.dropout_prob = dropout
    assert contexts[-1].y_mask is not None and contexts[-1].y.shape[1] == io["y"].shape[2]
    torch.testing.assert_close(fast, masked, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@torch.no_grad()
def test_cuda_bf16_matches_cpu_fp32(small_model):
    inputs = small_inputs(SMALL_CONFIG)
    reference = small_model(**inputs)
    cuda_model = STDiT3(SMALL_CONFIG).eval()
    cuda_model.load_state_dict(small_model.state_dict())
    cuda_model.to("cuda")
    cuda_inputs = {k: v.cuda() for k, v in inputs.items()}
    torch.testing.assert_close(cuda_model(**cuda_inputs).cpu(), reference, rtol=1e-3, atol=1e-3)
    cuda_model.to(torch.bfloat16)
    out = cuda_model(**cuda_inputs).cpu()
    assert (out - reference).abs().max() <= 0.1 * reference.abs().max()
