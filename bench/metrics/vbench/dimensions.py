"""The VBench dimensions this harness scores with the official package, and the files each needs.

One `Dimension` per VBench dimension (its `vbench/<dimension>.py`): the inputs it reads, VBench's aggregation
rule, the weight files with the place VBench reads them from and the address to download them
from, and where the dimension's clip length for VBench-Long comes from (its `configs/clip_length_mix.yaml`).

Where files live (VBench's `vbench/utils.py`, `init_submodules`): the VBench cache is `$VBENCH_CACHE_DIR`, else
`~/.cache/vbench`; the torch hub folder is `$TORCH_HOME/hub`, else `~/.cache/torch/hub`; the Hugging
Face cache (Tag2Text's bert-base-uncased) is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
`~/.cache/huggingface/hub`. The backend always runs VBench with local checkpoints, so nothing is
downloaded at scoring time: a missing file makes its dimension unavailable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Roots a weight file is relative to.
VBENCH_CACHE = "vbench_cache"
TORCH_HUB = "torch_hub"
HF_HUB = "hf_hub"

DINO_HUB_DIR = "facebookresearch_dino_main"
DINO_WEIGHTS = "dino_vitbase16_pretrain.pth"
AESTHETIC_HEAD = "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth"
AESTHETIC_HEAD_WGET_NAME = AESTHETIC_HEAD + "?raw=true"  # what the 0.1.5 wheel's wget fallback saves
VICLIP_VOCAB = "ViCLIP/bpe_simple_vocab_16e6.txt.gz"


def vbench_cache_dir() -> Path:
    return Path(os.environ.get("VBENCH_CACHE_DIR") or "~/.cache/vbench").expanduser()


def torch_hub_dir() -> Path:
    torch_home = os.environ.get("TORCH_HOME")
    return (Path(torch_home).expanduser() if torch_home else Path("~/.cache/torch").expanduser()) / "hub"


def hf_hub_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME")
    return (Path(hf_home).expanduser() if hf_home else Path("~/.cache/huggingface").expanduser()) / "hub"


def root_dir(root: str) -> Path:
    return {VBENCH_CACHE: vbench_cache_dir, TORCH_HUB: torch_hub_dir, HF_HUB: hf_hub_dir}[root]()


@dataclass(frozen=True)
class WeightFile:
    """A file (or folder) a dimension reads. Present when any of `alternatives` (relative to the
    same root) exists too: e.g. the aesthetic head under the name the 0.1.5 wget fallback gives it."""

    what: str  # in words, for the doctor's table
    root: str  # VBENCH_CACHE, TORCH_HUB or HF_HUB
    path: str  # relative to the root
    source: str  # where to get it: a URL, or the command that makes it
    alternatives: tuple[str, ...] = ()
    is_dir: bool = False

    def location(self) -> Path:
        return root_dir(self.root) / self.path

    def found(self) -> Path | None:
        """The existing path (the expected one first), or None."""
        base = root_dir(self.root)
        for relative in (self.path, *self.alternatives):
            candidate = base / relative
            if (candidate.is_dir() and any(candidate.iterdir())) if self.is_dir else candidate.is_file():
                return candidate
        return None


@dataclass(frozen=True)
class Dimension:
    name: str
    inputs: tuple[str, ...]  # METRIC_INPUTS the official code reads
    aggregation: str  # bench.metrics.registry.AGGREGATIONS key (VBench's own rule)
    weights: tuple[WeightFile, ...]
    group: str  # leaderboard group: Quality or Semantic
    long_clip_seconds: float  # VBench-Long clip length (configs/clip_length_mix.yaml)
    needs_auxiliary: bool = False  # reads VBench's auxiliary_info[<dimension>] of the prompt
    needs_module: str | None = None  # a Python module the isolated environment must also have


CLIP_B32 = WeightFile(
    "CLIP ViT-B/32 (TorchScript archive)", VBENCH_CACHE, "clip_model/ViT-B-32.pt",
    "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
)
CLIP_L14 = WeightFile(
    "CLIP ViT-L/14 (TorchScript archive)", VBENCH_CACHE, "clip_model/ViT-L-14.pt",
    "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
)
VICLIP = WeightFile(
    "ViCLIP ViT-L/14 (InternVid-10M-FLT)", VBENCH_CACHE, "ViCLIP/ViClip-InternVid-10M-FLT.pth",
    "https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/ViClip-InternVid-10M-FLT.pth",
)
VICLIP_BPE = WeightFile(
    "CLIP BPE vocabulary for ViCLIP", VBENCH_CACHE, VICLIP_VOCAB,
    "copied by the backend from the environment's openai-clip package (or "
    "https://raw.githubusercontent.com/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz)",
)

DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        Dimension(
            "subject_consistency", ("video",), "pair_weighted_mean",
            (
                WeightFile(
                    "DINO hub code (hubconf.py with dino_vitb16)", VBENCH_CACHE, f"dino_model/{DINO_HUB_DIR}",
                    "git clone https://github.com/facebookresearch/dino (into this folder)", is_dir=True,
                ),
                WeightFile(
                    "DINO ViT-B/16 weights (read through the torch hub cache)", TORCH_HUB, f"checkpoints/{DINO_WEIGHTS}",
                    "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
                ),
            ),
            "Quality", 2.0,
        ),
        Dimension("background_consistency", ("video",), "pair_weighted_mean", (CLIP_B32,), "Quality", 2.0),
        Dimension("temporal_flickering", ("video",), "mean", (), "Quality", 2.0),
        Dimension(
            "motion_smoothness", ("video",), "mean",
            (WeightFile("AMT-S interpolation network", VBENCH_CACHE, "amt_model/amt-s.pth",
                        "https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth"),),
            "Quality", 2.0,
        ),
        Dimension(
            "dynamic_degree", ("video", "fps"), "fraction_true",
            (WeightFile("RAFT (raft-things)", VBENCH_CACHE, "raft_model/models/raft-things.pth",
                        "https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip (unzip into raft_model/)"),),
            "Quality", 2.0,
        ),
        Dimension(
            "aesthetic_quality", ("video",), "mean",
            (
                CLIP_L14,
                WeightFile(
                    "LAION aesthetic head (Linear 768->1)", VBENCH_CACHE, AESTHETIC_HEAD,
                    "https://raw.githubusercontent.com/LAION-AI/aesthetic-predictor/main/sa_0_4_vit_l_14_linear.pth",
                    alternatives=(AESTHETIC_HEAD_WGET_NAME,),
                ),
            ),
            "Quality", 2.0,
        ),
        Dimension(
            "imaging_quality", ("video",), "mean_over_100",
            (WeightFile("MUSIQ (SPAQ)", VBENCH_CACHE, "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",
                        "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth"),),
            "Quality", 2.0,
        ),
        Dimension("temporal_style", ("video", "prompt"), "mean", (VICLIP, VICLIP_BPE), "Semantic", 10.0),
        Dimension("overall_consistency", ("video", "prompt"), "mean", (VICLIP, VICLIP_BPE), "Semantic", 10.0),
        Dimension(
            "scene", ("video", "auxiliary"), "frame_weighted_mean",
            (
                WeightFile("Tag2Text Swin-B captioner", VBENCH_CACHE, "caption_model/tag2text_swin_14m.pth",
                           "https://huggingface.co/spaces/xinyu1205/recognize-anything/resolve/main/tag2text_swin_14m.pth"),
                WeightFile("bert-base-uncased (Hugging Face cache)", HF_HUB, "models--bert-base-uncased",
                           "huggingface-cli download bert-base-uncased (on a machine with network)", is_dir=True),
            ),
            "Semantic", 2.0, needs_auxiliary=True,
        ),
        Dimension(
            "object_class", ("video", "auxiliary"), "frame_weighted_mean",
            (WeightFile("GRiT-B dense captioner (ObjectDet)", VBENCH_CACHE, "grit_model/grit_b_densecap_objectdet.pth",
                        "https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/grit_b_densecap_objectdet.pth"),),
            "Semantic", 2.0, needs_auxiliary=True, needs_module="detectron2",
        ),
    )
}


def missing_files(dimension: Dimension) -> list[WeightFile]:
    return [w for w in dimension.weights if w.found() is None]
