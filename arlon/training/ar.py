"""Stage "ar": the causal AR transformer over latent VQ codes (paper section 2.1, eq. 1).

Each batch of latents is tokenised by the trained AR-ratio VQ-VAE (Q = E_latent(E_video(x)), laid
out with <FRAME>/<EOS> by `codes_to_tokens`; the latents come from the fixed pool or, with
`train.fresh_clips`, from clips never seen before); the model then learns p(Q^AR | Y) by teacher forcing
with the caption embeddings Y of the text encoder. Captions are replaced by the empty prompt with
probability `train.caption_dropout`, so that classifier-free guidance (`ar_sampling.cfg_scale`,
whose null branch is the encoded empty prompt) has an unconditional model to contrast with.
"""

from __future__ import annotations

import torch
from torch import Tensor

from arlon.config import ARConfig
from arlon.global_batch import per_sample
from arlon.models.ar_transformer import ARTransformer, codes_to_tokens
from arlon.models.latent_vq import LatentVQVAE
from arlon.models.text_encoders import TextEncoder
from arlon.training.common import RunContext, StageOutput, TrainConfig, run_training, seeded
from arlon.training.data import ClipPool, Stream
from arlon.training.vq import encode_codes

EVAL_BATCH = 32


def train_ar(
    cfg: ARConfig,
    text_encoder: TextEncoder,
    ar_vq: LatentVQVAE,
    data: Stream,
    heldout: ClipPool,
    train: TrainConfig,
    run: RunContext,
    frame_grid: tuple[int, int] | None = None,
    trained_grid: tuple[int, int, int] | None = None,
) -> StageOutput:
    """Train an ARTransformer (`frame_grid`: `ArlonConfig.ar_frame_grid`, for factorised positions) on the AR-ratio codes of `data`'s latents; report held-out cross-entropy."""
    ar_vq.eval()
    with seeded(train.seed, run.device):
        ar = ARTransformer(cfg, frame_grid).to(run.device)

    def loss_fn(model: ARTransformer, batch, generator: torch.Generator) -> Tensor:
        captions = drop_captions(batch.captions, train.caption_dropout, generator)
        text_emb, text_mask = text_encoder.encode(captions)  # (B, L, D), (B, L)
        with torch.no_grad():
            targets = codes_to_tokens(ar_vq.encode(batch.x), cfg.codebook_size)  # (B, n)
        _, loss = model(text_emb.to(run.device), text_mask.to(run.device), targets, targets=targets)
        return loss

    result = run_training("ar", ar, loss_fn, data, train, run)
    ar.eval()
    heldout_codes = encode_codes(ar_vq, heldout.x, run.device)  # (N, t, h, w), the grid of every training clip
    heldout_tokens = codes_to_tokens(heldout_codes, cfg.codebook_size)
    metrics = {**result.loss_metrics(), **heldout_metrics(ar, text_encoder, heldout.captions, heldout_tokens, run.device)}
    # Positions past this grid never received a gradient: long videos sample within it (arlon/pipelines/long_video.py).
    # `trained_grid`: the longest grid of length-bucketed data; else every clip has the held-out clips' grid.
    grid = list(trained_grid) if trained_grid is not None else list(heldout_codes.shape[1:])
    return StageOutput(ar, metrics, result, record={"trained_grid": grid})


def drop_captions(captions: list[str], probability: float, generator: torch.Generator) -> list[str]:
    """Replace each caption by "" (the null prompt) with `probability`; one draw per caption, always."""
    drop = per_sample(lambda n: torch.rand(n, generator=generator), len(captions)) < probability  # arlon/global_batch.py
    return ["" if dropped else caption for caption, dropped in zip(captions, drop.tolist())]


@torch.no_grad()
def heldout_metrics(
    ar: ARTransformer, text_encoder: TextEncoder, captions: list[str], tokens: Tensor, device: torch.device
) -> dict[str, float]:
    """Teacher-forced cross-entropy and code accuracy (argmax over code positions) on held-out clips."""
    total_loss, correct, counted = 0.0, 0, 0
    for start in range(0, len(captions), EVAL_BATCH):
        text_emb, text_mask = text_encoder.encode(captions[start : start + EVAL_BATCH])
        targets = tokens[start : start + EVAL_BATCH].to(device)
        logits, loss = ar(text_emb.to(device), text_mask.to(device), targets, targets=targets)
        total_loss += float(loss) * targets.shape[0]
        is_code = targets < ar.cfg.codebook_size
        correct += int((logits.argmax(-1) == targets)[is_code].sum())
        counted += int(is_code.sum())
    return {"heldout_loss": total_loss / len(captions), "heldout_code_accuracy": correct / max(counted, 1)}
