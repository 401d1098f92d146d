from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from arlon.data import toyworld as tw
from arlon.data.video_io import read_video, write_video
from arlon.errors import ConfigError
from bench.errors import BenchError
from bench.metrics import METRICS, MetricSpec, aggregate, register_metric
from bench.metrics import toyworld as tm

T, H, W = 16, 32, 32
TOY_METRICS = tm.clip_metrics()  # the clip judges; the long-video ones are tested in test_toylong_metrics.py
REVERSED = {
    "right": "left",
    "left": "right",
    "up": "down",
    "down": "up",
    "up_right": "down_left",
    "down_left": "up_right",
    "up_left": "down_right",
    "down_right": "up_left",
}


def _frames(scene: tw.SceneSpec) -> np.ndarray:
    return tw.render(scene, T, H, W).frames


def _mean_scores(videos_and_scenes, reference=None) -> dict[str, float]:
    """Mean of each toy metric over (video, scene) pairs; reference(video, scene) gives the reference video."""
    rows = [
        tm.score_video(v, s, reference_video=None if reference is None else reference(v, s)) for v, s in videos_and_scenes
    ]
    return {name: float(np.mean([r[name] for r in rows if r[name] is not None])) for name in rows[0]}


@pytest.fixture(scope="module")
def heldout() -> list[tuple[np.ndarray, tw.SceneSpec]]:
    """Canonical renders of held-out prompts: what a perfect generator would produce."""
    return [(_frames(p.scene), p.scene) for p in tw.prompt_set("heldout", 20)]


@pytest.fixture(scope="module")
def clean_scores(heldout) -> dict[str, float]:
    return _mean_scores(heldout, reference=lambda v, s: v)


# ---- registry ------------------------------------------------------------------------------------


def test_every_toy_metric_has_a_complete_spec():
    assert TOY_METRICS == [
        "toy_colour_fidelity",
        "toy_shape_accuracy",
        "toy_motion_accuracy",
        "toy_trajectory_error",
        "toy_layout_iou",
        "toy_object_layout_iou",
        "toy_temporal_flicker",
    ]
    for name in TOY_METRICS:
        spec = METRICS.get(name)
        assert spec.name == name and name.startswith("toy_")  # never a VBench dimension's name
        assert spec.backend == "toyworld" and spec.version >= 1 and spec.aggregation == "mean"
        assert spec.inputs[:2] == ("video", "scene") and callable(spec.fn)
        assert "Range [0, 1]" in " ".join(spec.fn.__doc__.split())  # the docstring states the range
    assert [n for n in TOY_METRICS if not METRICS.get(n).higher_is_better] == ["toy_trajectory_error"]


def test_registry_rejects_bad_specs_and_unknown_names():
    with pytest.raises(ConfigError, match="did you mean 'toy_colour_fidelity'"):
        METRICS.get("toy_color_fidelity")
    with pytest.raises(ValueError, match="unknown inputs"):
        MetricSpec("x", "toyworld", 1, ("video", "caption"), "mean", True, lambda video: 0.0)
    with pytest.raises(ConfigError, match="unknown aggregation"):
        MetricSpec("x", "toyworld", 1, ("video",), "average", True, lambda video: 0.0)
    with pytest.raises(ValueError, match="already registered"):
        register_metric("toy_colour_fidelity", backend="toyworld", version=1, inputs=("video",), higher_is_better=True)(
            lambda video: 0.0
        )


def test_aggregate_leaves_out_videos_where_the_metric_does_not_apply():
    spec = METRICS.get("toy_layout_iou")
    assert aggregate([0.5, None, 1.0], spec) == pytest.approx(0.75)
    assert aggregate([None, None], spec) is None
    with pytest.raises(BenchError, match="NaN"):
        aggregate([float("nan")], spec)


def test_score_video_gives_none_without_a_reference_and_checks_its_inputs(heldout):
    video, scene = heldout[0]
    scores = tm.score_video(video, scene)
    assert list(scores) == TOY_METRICS
    assert scores["toy_layout_iou"] is None and scores["toy_object_layout_iou"] is None
    without_reference = [n for n in TOY_METRICS if n not in ("toy_layout_iou", "toy_object_layout_iou")]
    assert all(isinstance(scores[n], float) for n in without_reference)
    assert tm.score_video(video, scene, metrics=["toy_shape_accuracy"]) == {"toy_shape_accuracy": 1.0}
    with pytest.raises(BenchError, match="uint8 frames"):
        tm.score_video(video.astype(np.float32), scene)
    with pytest.raises(BenchError, match="reference video has shape"):
        tm.layout_iou(video, scene, video[:8])


# ---- building blocks -------------------------------------------------------------------------------


def test_largest_component_is_8_connected_and_keeps_the_biggest():
    masks = np.zeros((2, 6, 6), bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 2, 2] = True  # a diagonal line: one component of 3
    masks[0, 4:6, 4:6] = True  # a square of 4
    masks[1, 0, 0:2] = True
    largest = tm.largest_components(masks)
    assert largest[0].sum() == 4 and largest[0, 4:6, 4:6].all()
    assert largest[1].sum() == 2
    masks[0, 3, 3] = True  # joins the line to the square diagonally
    assert tm.largest_components(masks)[0].sum() == 8


def test_shape_classifier_on_clean_renders():
    """Per-frame accuracy on the detections of clean training clips, and the confusion it makes."""
    world = tw.ToyWorld(seed=3, split="train", num_frames=T, height=H, width=W)
    confusion = {shape: dict.fromkeys(tw.SHAPES, 0) for shape in tw.SHAPES}
    voted_right = []
    for index in range(14):
        clip = world[index]
        analysis = tm.analyse_video(clip.frames, clip.scene)
        for obj, detections in zip(clip.scene.objects, analysis.objects, strict=True):
            for t in tm.whole_frames(detections)[::4]:
                confusion[obj.shape][tm.frame_shape(detections, t)] += 1
            voted_right.append(tm.voted_shape(detections) == obj.shape)
    total = sum(sum(row.values()) for row in confusion.values())
    accuracy = sum(confusion[s][s] for s in tw.SHAPES) / total
    assert total > 60 and accuracy >= 0.95, confusion
    assert np.mean(voted_right) >= 0.95


@pytest.mark.parametrize("motion", tw.MOTIONS)
def test_every_motion_is_recognised_on_a_clean_render(motion):
    triple = next(t for t in tw.TRAIN_TRIPLES if t[2] == motion)
    scene = tw.sample_scene(np.random.default_rng([7, tw.MOTIONS.index(motion)]), "train", 1, T, primary=triple)
    detections = tm.analyse_video(_frames(scene), scene).objects[0]
    assert tm.detected_motion(detections, W) == tm.expected_motion(scene.objects[0])


# ---- clean and degraded videos ---------------------------------------------------------------------


def test_clean_renders_score_perfectly(clean_scores):
    assert clean_scores["toy_colour_fidelity"] >= 0.95
    assert clean_scores["toy_shape_accuracy"] >= 0.9
    assert clean_scores["toy_motion_accuracy"] >= 0.9
    assert clean_scores["toy_trajectory_error"] < 0.005
    assert clean_scores["toy_layout_iou"] == 1.0 and clean_scores["toy_object_layout_iou"] == 1.0
    assert clean_scores["toy_temporal_flicker"] >= 0.98


def test_pure_noise_scores_low_everywhere(heldout):
    rng = np.random.default_rng(0)
    noise = [(rng.integers(0, 256, v.shape, dtype=np.uint8), s) for v, s in heldout[:6]]
    clean = {id(s): v for v, s in heldout[:6]}
    scores = _mean_scores(noise, reference=lambda v, s: clean[id(s)])
    assert scores["toy_colour_fidelity"] <= 0.1
    assert scores["toy_shape_accuracy"] <= 0.2 and scores["toy_motion_accuracy"] <= 0.2
    assert scores["toy_trajectory_error"] >= 0.3
    assert scores["toy_layout_iou"] <= 0.3 and scores["toy_object_layout_iou"] <= 0.1
    assert scores["toy_temporal_flicker"] <= 0.1


def test_reversed_motion_is_read_as_the_opposite_direction(heldout):
    reversed_scenes = []
    for video, scene in heldout:
        primary = scene.objects[0]
        if primary.motion not in REVERSED:
            continue
        # Start where the original ends, so the reversed object retraces the same in-view path.
        end = tw.render(scene, T, H, W).centres[-1, 0] / (W, H)
        backwards = replace(primary, motion=REVERSED[primary.motion], x=float(end[0]), y=float(end[1]))
        shown = replace(scene, objects=(backwards, *scene.objects[1:]))
        truth = tw.render(shown, T, H, W)
        if (truth.masks[:, 0].sum(axis=(1, 2)) >= 0.9 * np.pi * truth.sizes[:, 0] ** 2).all():  # never hidden
            reversed_scenes.append((shown, scene))
    assert len(reversed_scenes) >= 5
    for shown, prompted in reversed_scenes:
        detections = tm.analyse_video(_frames(shown), prompted).objects[0]
        assert tm.detected_motion(detections, W) == REVERSED[prompted.objects[0].motion]
        assert tm.motion_accuracy(_frames(shown), prompted) <= 1 - 1 / len(prompted.objects)


def test_motion_presence_and_stillness_on_clean_frozen_and_reversed_videos(heldout):
    # Clean renders: every object asked to travel travels and every static one stays.
    presence = [tm.motion_presence(v, s) for v, s in heldout]
    stillness = [tm.motion_stillness(v, s) for v, s in heldout]
    assert sum(p is not None for p in presence) >= 5 and sum(p is not None for p in stillness) >= 1
    assert all(p == 1.0 for p in presence if p is not None) and all(p == 1.0 for p in stillness if p is not None)
    # The first frame held for the whole clip: nothing travels, so presence fails and stillness holds.
    frozen = [(np.repeat(v[:1], T, axis=0), s) for v, s in heldout]
    assert all(tm.motion_presence(v, s) in (None, 0.0) for v, s in frozen)
    assert all(tm.motion_stillness(v, s) in (None, 1.0) for v, s in frozen)
    # Travelling the wrong way is still motion: presence holds where motion accuracy fails.
    for video, scene in heldout:
        if scene.objects[0].motion in REVERSED and len(scene.objects) == 1:
            backwards = video[::-1]
            assert tm.motion_presence(backwards, scene) == 1.0 and tm.motion_accuracy(backwards, scene) == 0.0
            break
    else:
        pytest.fail("no single-object linear move among the held-out prompts")
    # Scenes without a travelling (static) object give None.
    only_static = next(s for _, s in heldout if all(o.motion != "static" for o in s.objects))
    assert tm.motion_stillness(_frames(only_static), only_static) is None


def test_wrong_colours_are_not_found(heldout):
    for video, scene in heldout[:6]:
        used = {o.colour for o in scene.objects} | {o.target_colour for o in scene.objects if o.target_colour}
        free = iter(c for c in tw.COLOURS if c not in used and not (c == "white" and scene.background == "light"))
        recoloured = tuple(replace(o, colour=next(free), motion="static", target_colour=None) for o in scene.objects)
        wrong = _frames(replace(scene, objects=recoloured))
        assert tm.colour_fidelity(wrong, scene) <= 0.05
        assert tm.shape_accuracy(wrong, scene) == 0.0


def test_shuffled_frames_lose_trajectory_and_motion(heldout, clean_scores):
    rng = np.random.default_rng(1)
    shuffled = [(v[rng.permutation(T)], s) for v, s in heldout]
    scores = _mean_scores(shuffled, reference=lambda v, s: _frames(s))
    assert scores["toy_trajectory_error"] > max(0.03, 10 * clean_scores["toy_trajectory_error"])
    assert scores["toy_motion_accuracy"] <= 0.6
    assert scores["toy_layout_iou"] <= 0.7
    assert scores["toy_colour_fidelity"] >= 0.95  # the same frames, in another order


def test_flicker_falls_for_shuffled_pans_and_blinking_but_not_for_steady_pans():
    obj = tw.ObjectSpec("circle", "red", "right", 0.3, 0.5, 0.12, 0.03)
    panning = tw.SceneSpec("noisy", (obj,), camera_pan="left", pan_speed=0.008, seed=5)
    video = _frames(panning)
    assert tm.temporal_flicker(video, panning) >= 0.97
    shuffled = video[np.random.default_rng(2).permutation(T)]
    assert tm.temporal_flicker(shuffled, panning) <= 0.9
    blink = 8 * (-1) ** np.arange(T)[:, None, None, None]  # +-8 levels every other frame: roughness 16
    blinking = np.clip(video.astype(int) + blink, 0, 255).astype(np.uint8)
    assert tm.temporal_flicker(blinking, panning) == pytest.approx(0.5, abs=0.05)
    assert tm.temporal_flicker(video[:2], panning) is None


def test_recolour_is_found_whatever_its_timing():
    obj = tw.ObjectSpec("square", "green", "recolour", 0.5, 0.5, 0.14, target_colour="blue", recolour_start=2)
    scene = tw.SceneSpec("dark", (obj,))
    late = _frames(replace(scene, objects=(replace(obj, recolour_start=8),)))
    never = _frames(replace(scene, objects=(replace(obj, motion="static", target_colour=None),)))
    assert tm.colour_fidelity(late, scene) == 1.0 and tm.motion_accuracy(late, scene) == 1.0
    assert tm.colour_fidelity(never, scene) == 1.0 and tm.motion_accuracy(never, scene) == 0.0


def test_scores_survive_an_h264_round_trip(heldout, clean_scores, tmp_path):
    decoded = []
    for index, (video, scene) in enumerate(heldout[:12]):
        path = write_video(tmp_path / f"{index}.mp4", video)
        decoded.append((read_video(path)[0], scene))
    originals = {id(s): v for v, s in heldout}
    scores = _mean_scores(decoded, reference=lambda v, s: originals[id(s)])
    assert scores["toy_colour_fidelity"] >= 0.95
    assert scores["toy_shape_accuracy"] >= 0.8
    assert scores["toy_motion_accuracy"] >= 0.9
    assert scores["toy_trajectory_error"] < 0.01
    assert scores["toy_layout_iou"] >= 0.75 and scores["toy_object_layout_iou"] >= 0.7
    assert scores["toy_temporal_flicker"] >= 0.95


def test_analyses_are_per_scene(heldout):
    (video, scene), (_, other) = heldout[0], heldout[1]
    assert tm.analyse_video(video, scene) is tm.analyse_video(video.copy(), scene)
    assert len(tm.analyse_video(video, other).objects) == len(other.objects)
