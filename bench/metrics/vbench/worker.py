"""Runs the official VBench 0.1.5 dimension code on a list of videos, INSIDE VBench's own
environment (`bench/metrics/vbench/env.py`). Standalone on purpose: it imports nothing from this
project, only the standard library, torch, OpenCV, decord and vbench.

    <env>/bin/python worker.py REQUEST.json RESPONSE.json
    <env>/bin/python worker.py --check            # prints {"vbench": ..., "torch": ...} as JSON

Request (written by `bench.metrics.vbench.backend`):
    {"device": "cpu" | "cuda", "output_dir": str, "vbench_cache": str,
     "videos": [{"id": str, "path": str, "prompt": str, "auxiliary": {dimension: value}}],
     "dimensions": {name: {"paths": {role: path}}}}
Response:
    {"versions": {...},
     "results": {dimension: {video id: {"value": float, "weight": float | null, "details": {...}}}},
     "errors": {dimension: one line},                      # the whole dimension failed
     "video_errors": {video id: one line},                 # the file cannot be read: no dimension scored it
     "dimension_video_errors": {dimension: {video id: one line}},
     "seconds": {dimension: wall seconds of its VBench call, model loading included}}

How VBench is called: per dimension, the way `VBench.evaluate(..., mode="custom_input",
local=True)` does (a full-info JSON listing each video with its prompt, then
`vbench.<dimension>.compute_<dimension>(full_info, device, submodules)`), except that the
submodule paths come from the request, so VBench never tries to download anything, and that
scene / object_class get the prompt's auxiliary info in the full-info entries (custom-input mode
refuses them only because file names carry no auxiliary info). A dimension that fails on the batch
is retried video by video, so one bad video costs only its own score.

Work-arounds for VBench 0.1.5, without editing the installed package (docs/vbench-notes.md, 'Known pitfalls'):
- AMT (and the aesthetic head, RAFT) are read with `torch.load`, whose `weights_only` default
  became True in torch 2.6: the worker makes False the default again (the files are the user's own
  checkpoints, found in the VBench cache).
- The 0.1.5 wheel's wget fallback saves the aesthetic head as `...linear.pth?raw=true`; the worker
  hands VBench a folder with a link under the expected name instead.
- ViCLIP's tokenizer module downloads CLIP's BPE vocabulary at import time when it is not in the
  VBench cache; the worker copies it there from the environment's openai-clip package first.
- Prompts with spaces break only the 0.1.5 CLI's re-launch; the Python API used here is not affected.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

# Dimensions whose per-video entries carry their aggregation weight, or whose weight is the pair count.
PAIR_WEIGHTED = ("subject_consistency", "background_consistency")
FRAME_WEIGHTED = ("scene", "object_class")


def one_line(err: BaseException) -> str:
    message = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {message}"[:500]


def versions() -> dict:
    import importlib.metadata as metadata

    import torch

    found = {"python": sys.version.split()[0], "torch": torch.__version__}
    for package in ("vbench", "torchvision", "transformers", "numpy", "timm", "pyiqa", "decord", "opencv-python"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def patch_torch_load() -> None:
    """weights_only=False unless the caller says otherwise (VBench 0.1.5 predates torch 2.6)."""
    import torch

    original = torch.load
    if getattr(original, "_arlon_patched", False):
        return

    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    load._arlon_patched = True
    torch.load = load


def provide_viclip_vocabulary(cache: Path) -> None:
    target = cache / "ViCLIP" / "bpe_simple_vocab_16e6.txt.gz"
    if target.is_file():
        return
    import clip  # openai-clip ships the same vocabulary file

    source = Path(clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def readable_frames(path: str) -> int:
    """Frames decord and OpenCV both read (VBench uses both); raises when either reads none."""
    import cv2
    import decord

    capture = cv2.VideoCapture(path)
    ok, _ = capture.read()
    capture.release()
    if not ok:
        raise ValueError(f"OpenCV reads no frame from {path}")
    frames = len(decord.VideoReader(path, num_threads=1))
    if frames < 1:
        raise ValueError(f"decord reads no frame from {path}")
    return frames


def submodules_for(dimension: str, paths: dict, work_dir: Path, read_frame: bool = False):
    """The argument VBench's `compute_<dimension>` takes, built from the request's paths."""
    if dimension == "subject_consistency":
        return {"repo_or_dir": paths["hub_dir"], "path": paths["weights"], "model": "dino_vitb16",
                "source": "local", "read_frame": read_frame}
    if dimension == "background_consistency":
        return [paths["clip"], read_frame]
    if dimension == "aesthetic_quality":
        head = Path(paths["head"])
        folder = head.parent
        if head.name != "sa_0_4_vit_l_14_linear.pth":
            folder = work_dir / "aesthetic_head"
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / "sa_0_4_vit_l_14_linear.pth"
            if not link.exists():
                link.symlink_to(head.resolve())
        return [paths["clip"], str(folder)]
    if dimension == "imaging_quality":
        return {"model_path": paths["model"]}
    if dimension == "motion_smoothness":
        import vbench

        config = Path(vbench.__file__).parent / "third_party" / "amt" / "cfgs" / "AMT-S.yaml"
        return {"config": str(config), "ckpt": paths["model"]}
    if dimension == "dynamic_degree":
        return {"model": paths["model"]}
    if dimension == "temporal_flickering":
        return []
    if dimension in ("temporal_style", "overall_consistency"):
        return {"pretrain": paths["model"]}
    if dimension == "scene":
        return {"pretrained": paths["model"], "image_size": 384, "vit": "swin_b"}
    if dimension == "object_class":
        return {"model_weight": paths["model"]}
    raise ValueError(f"the worker does not know the dimension {dimension!r}")


def full_info(dimension: str, videos: list[dict]) -> list[dict]:
    entries = []
    for video in videos:
        entry = {"prompt_en": video["prompt"], "dimension": [dimension], "video_list": [video["path"]]}
        auxiliary = (video.get("auxiliary") or {}).get(dimension)
        if auxiliary is not None:
            entry["auxiliary_info"] = {dimension: auxiliary}
        entries.append(entry)
    return entries


def per_video(dimension: str, entry: dict, frames: int) -> dict:
    raw = entry["video_results"]
    details = {"frames": frames}
    if dimension == "dynamic_degree":
        value = 1.0 if bool(raw) else 0.0
        return {"value": value, "weight": None, "details": details}
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{dimension} gave {value}")
    weight = None
    if dimension == "background_consistency":
        weight = float(entry.get("cnt_per_video", frames - 1))
    elif dimension == "subject_consistency":
        weight = float(frames - 1)
    elif dimension in FRAME_WEIGHTED:
        weight = float(entry.get("frame_count", frames))
        details["success_frames"] = entry.get("success_frame_count")
    return {"value": value, "weight": weight, "details": details}


def run_dimension(dimension: str, videos: list[dict], submodules, device: str, work_dir: Path) -> dict:
    """{video id: per-video result} for `videos`, one VBench call."""
    import importlib

    module = importlib.import_module(f"vbench.{dimension}")
    compute = getattr(module, f"compute_{dimension}")
    info_path = work_dir / f"{dimension}_full_info.json"
    info_path.write_text(json.dumps(full_info(dimension, videos)))
    _, entries = compute(str(info_path), device, submodules)
    by_path = {os.path.abspath(v["path"]): v for v in videos}
    results = {}
    for entry in entries:
        video = by_path.get(os.path.abspath(entry["video_path"]))
        if video is not None:
            results[video["id"]] = per_video(dimension, entry, video["frames"])
    return results


def score(request: dict) -> dict:
    cache = Path(request["vbench_cache"])
    os.environ["VBENCH_CACHE_DIR"] = str(cache)  # read by vbench.utils at import time
    out = Path(request["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    response = {"versions": versions(), "results": {}, "errors": {}, "video_errors": {}, "dimension_video_errors": {},
                "seconds": {}}
    patch_torch_load()
    try:
        provide_viclip_vocabulary(cache)
    except Exception as err:  # only the ViCLIP dimensions need it; they fail with this line below
        response["errors"]["viclip_vocabulary"] = one_line(err)

    videos = []
    for video in request["videos"]:
        try:
            videos.append({**video, "frames": readable_frames(video["path"])})
        except Exception as err:
            response["video_errors"][video["id"]] = f"cannot read the video: {one_line(err)}"

    import torch

    device_name = request.get("device", "auto")
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    # A torch.device, as VBench's own evaluate.py passes: motion_smoothness compares it with the
    # string "cuda" and only then downscales by GPU memory (`vbench/motion_smoothness.py`), which the official
    # runs never do.
    device = torch.device(device_name)
    response["device"] = device_name
    for dimension, spec in request["dimensions"].items():
        work_dir = out / dimension
        work_dir.mkdir(parents=True, exist_ok=True)
        mine = [v for v in videos if dimension not in ("scene", "object_class") or (v.get("auxiliary") or {}).get(dimension)]
        if not mine:
            response["results"][dimension] = {}
            continue
        started = time.perf_counter()
        try:
            submodules = submodules_for(dimension, spec["paths"], work_dir)
            results = run_dimension(dimension, mine, submodules, device, work_dir)
            failed = {v["id"]: "VBench returned no result for this video" for v in mine if v["id"] not in results}
        except Exception as err:
            print(f"[worker] {dimension} failed on the batch ({one_line(err)}); retrying video by video", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            results, failed = {}, {}
            if len(mine) == 1:
                failed[mine[0]["id"]] = one_line(err)
            for video in mine if len(mine) > 1 else []:
                try:
                    submodules = submodules_for(dimension, spec["paths"], work_dir)
                    results.update(run_dimension(dimension, [video], submodules, device, work_dir))
                    if video["id"] not in results:
                        failed[video["id"]] = "VBench returned no result for this video"
                except Exception as single:
                    failed[video["id"]] = one_line(single)
            if not results:
                response["errors"][dimension] = one_line(err)
                failed = {}
        response["results"][dimension] = results
        response["seconds"][dimension] = time.perf_counter() - started  # its models' loading included
        if failed:
            response["dimension_video_errors"][dimension] = failed
    return response


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        import vbench  # noqa: F401  (the check is that it imports)

        print(json.dumps(versions()))
        return 0
    if len(argv) != 2:
        print("usage: worker.py REQUEST.json RESPONSE.json | --check", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text())
    response = score(request)
    tmp = Path(argv[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps(response, indent=2))
    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
