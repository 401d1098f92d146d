from __future__ import annotations

import numpy as np
import pytest

from arlon.data import toyworld as tw
from arlon.data.video_io import read_video, write_video
from bench.errors import BenchError
from bench.metrics import METRICS, compute_metric
from bench.metrics import toylong as tl
from bench.metrics import toyworld as tm
from bench.metrics.registry import metrics_of_backend
from bench.prompts import PromptSetConfig, load_prompts

FRAMES, H, W = 64, 32, 32
SEGMENTS = ((0, 16), (20, 32), (36, 48), (52, 64))  # new frames of 4 DiT segments; seams at 20, 36, 52
# each linear motion's opposite: the motion whose direction vector is the negated one
REVERSED = {
    motion: next(other for other, (ox, oy) in tw.LINEAR_MOTIONS.items() if (ox, oy) == (-x, -y))
    for motion, (x, y) in tw.LINEAR_MOTIONS.items()
}


def _in_view(timeline: tw.ToyTimeline) -> np.ndarray:
    """(T,) the ground truth shows the primary object in view, as `toylong.in_view` reads it from an
    analysis: counted and its mask not touching the border."""
    truth = timeline.render(H, W)
    masks = truth.masks[:, 0]
    counted = masks.sum(axis=(1, 2)) >= tm.COUNTED_VISIBILITY * np.pi * truth.sizes[:, 0] ** 2
    return counted & ~(masks[:, 0].any(-1) | masks[:, -1].any(-1) | masks[:, :, 0].any(-1) | masks[:, :, -1].any(-1))


@pytest.fixture(scope="module")
def timelines() -> dict[str, list[tw.ToyTimeline]]:
    """Three held-out long prompts whose primary object moves in a straight line, and three
    progressive prompts whose primary is in view for at least half of each part (many progressive
    prompts leave it off screen for their whole second part, where nothing can be judged)."""
    prompts = load_prompts(PromptSetConfig(kind="toyworld_long", n=20, frames=FRAMES))
    movers = [
        p.timeline for p in prompts if len(p.timeline.parts) == 1 and p.timeline.scenes[0].objects[0].motion in REVERSED
    ]
    progressive = [
        p.timeline
        for p in prompts
        if len(p.timeline.parts) == 2 and all(_in_view(p.timeline)[a : a + 32].mean() >= 0.5 for a in (0, 32))
    ]
    assert len(movers) >= 3 and len(progressive) >= 3
    return {"movers": movers[:3], "progressive": progressive[:3]}


def _continued(timeline: tw.ToyTimeline, change, at: int = 32) -> np.ndarray:
    """The frames of a one-part timeline whose primary object does `change(obj)` from frame `at`
    on (the other objects carry on); judged against the original timeline, a corrupted video."""
    scene = timeline.scenes[0]
    changes = [change(scene.objects[0])] + [tw.ObjectChange(o.motion, o.speed) for o in scene.objects[1:]]
    second = tw.continue_scene(scene, changes, at, H, W)
    return tw.ToyTimeline(((scene, at), (second, timeline.num_frames - at))).render(H, W).frames


def _stopped(timeline: tw.ToyTimeline) -> np.ndarray:
    """The primary object stops at the last frame before 32 where it is in view (stopping off
    screen would lose it, which is another corruption)."""
    at = int(np.flatnonzero(_in_view(timeline)[:32])[-1])
    return _continued(timeline, lambda o: tw.ObjectChange("static"), at=at)


def _brighter_from(video: np.ndarray, frame: int, levels: int = 10) -> np.ndarray:
    step = levels * (np.arange(len(video)) >= frame)[:, None, None, None]
    return np.clip(video.astype(int) + step, 0, 255).astype(np.uint8)


def _scores(video: np.ndarray, timeline: tw.ToyTimeline) -> dict[str, float | None]:
    return tl.score_long_video(video, timeline, SEGMENTS)


def _free_colour(scene: tw.SceneSpec) -> str:
    used = {o.colour for o in scene.objects} | {o.target_colour for o in scene.objects if o.target_colour}
    return next(c for c in tw.COLOURS if c not in used and c != "white")


# ---- registry and inputs ---------------------------------------------------------------------------


def test_long_judges_are_registered_after_the_clip_judges():
    assert metrics_of_backend("toyworld") == [*tm.clip_metrics(), *tl.LONG_METRICS]
    assert list(tl.LONG_METRICS) == ["toy_long_identity", "toy_long_motion", "toy_long_drift", "toy_seam_flicker"]
    for name in tl.LONG_METRICS:
        spec = METRICS.get(name)
        assert name.startswith(("toy_long_", "toy_seam_"))  # never a VBench dimension's name
        assert spec.backend == "toyworld" and spec.version == 1 and spec.aggregation == "mean"
        assert spec.inputs == ("video", "timeline", "segments") and callable(spec.fn)
        assert "Range [0, " in " ".join(spec.fn.__doc__.split())
    assert [n for n in tl.LONG_METRICS if METRICS.get(n).higher_is_better] == ["toy_long_identity", "toy_long_motion"]


def test_missing_inputs_give_none_and_bad_inputs_fail(timelines):
    timeline = timelines["movers"][0]
    video = timeline.render(H, W).frames
    assert tl.score_long_video(video, timeline, None) == dict.fromkeys(tl.LONG_METRICS)  # a clip: not applicable
    for name in tl.LONG_METRICS:
        assert compute_metric(METRICS.get(name), {"video": video, "timeline": None, "segments": SEGMENTS}) is None
    # The clip judges' default list leaves the long judges out.
    assert list(tm.score_video(video[:16], timeline.scenes[0])) == tm.clip_metrics()
    with pytest.raises(BenchError, match="timeline has 64 frames but the video 48"):
        tl.long_identity(video[:48], timeline, SEGMENTS)
    with pytest.raises(BenchError, match="increasing"):
        tl.seam_flicker(video, timeline, ((0, 16), (12, 32)))
    with pytest.raises(BenchError, match="increasing"):
        tl.long_motion(video, timeline, ((0, 16), (20, 80)))
    # One segment: no seam.
    assert tl.seam_flicker(video, timeline, ((0, 64),)) is None


def test_windows_are_cut_at_part_boundaries(timelines):
    timeline = timelines["progressive"][0]
    windows = tl.judged_windows(timeline, ((0, 16), (16, 28), (28, 40), (40, 52), (52, 64)))
    # (28, 40) is cut at 32: its 4-frame head is too short to judge, its tail is a window of part 1.
    assert [(w.segment, w.part, w.start, w.end) for w in windows] == [
        (0, 0, 0, 16), (1, 0, 16, 28), (2, 1, 32, 40), (3, 1, 40, 52), (4, 1, 52, 64),
    ]


def test_truth_path_unwraps_wrap_arounds():
    obj = tw.ObjectSpec("circle", "red", "right", 0.5, 0.5, 0.15, tw.GRID_STEP)
    truth = tw.render(tw.SceneSpec("dark", (obj,)), FRAMES, H, W)
    path, periods = tl.unwrap_truth_path(truth.centres[:, 0], H, W)
    assert np.allclose(np.diff(path[:, 0]), 1.0) and np.allclose(path[:, 1], path[0, 1])  # 1 px per frame
    assert periods[0] > W and np.isnan(periods[1])


# ---- ground truth and corrupted videos --------------------------------------------------------------


def test_ground_truth_scores_perfectly(timelines):
    for timeline in timelines["movers"] + timelines["progressive"]:
        scores = _scores(timeline.render(H, W).frames, timeline)
        assert scores["toy_long_identity"] == 1.0 and scores["toy_long_motion"] == 1.0, scores
        assert scores["toy_long_drift"] < 0.01, scores
        assert scores["toy_seam_flicker"] == pytest.approx(1.0, abs=0.15), scores


def test_recoloured_or_lost_object_loses_identity_and_drifts(timelines):
    for timeline in timelines["movers"]:
        colour = _free_colour(timeline.scenes[0])
        recoloured = _continued(timeline, lambda o: tw.ObjectChange(o.motion, o.speed, colour=colour))
        scores = _scores(recoloured, timeline)
        # Segments 2 and 3 (frames 36-64) show the object in another colour: it is not found there.
        assert scores["toy_long_identity"] <= 0.5
        assert scores["toy_long_drift"] >= 0.2  # lost frames count as far off as the cap
        stopped = _scores(_stopped(timeline), timeline)
        assert scores["toy_long_drift"] >= stopped["toy_long_drift"]  # losing it is never better than stopping


def test_reversed_motion_lowers_motion_and_stopping_raises_drift(timelines):
    for timeline in timelines["movers"]:
        clean = _scores(timeline.render(H, W).frames, timeline)
        reversed_ = _scores(_continued(timeline, lambda o: tw.ObjectChange(REVERSED[o.motion], o.speed)), timeline)
        assert reversed_["toy_long_motion"] <= 0.5 and reversed_["toy_long_identity"] == 1.0
        assert reversed_["toy_long_drift"] >= 0.1
        stopped = _scores(_stopped(timeline), timeline)
        assert stopped["toy_long_motion"] <= 0.5
        assert stopped["toy_long_drift"] >= max(0.1, 10 * clean["toy_long_drift"])


def test_progressive_change_not_made_is_caught(timelines):
    """A video that keeps the first part's colour and motion for the whole timeline."""
    for timeline in timelines["progressive"]:
        unchanged = tw.long_timeline(timeline.scenes[0], FRAMES).render(H, W).frames
        scores = _scores(unchanged, timeline)
        first, second = (s.objects[0] for s in timeline.scenes)
        if first.colour != second.colour:
            assert scores["toy_long_identity"] <= 0.75
        assert scores["toy_long_motion"] <= 0.75


def test_jumps_at_a_seam_raise_seam_flicker(timelines):
    for timeline in timelines["movers"]:
        video = timeline.render(H, W).frames
        clean = tl.seam_flicker(video, timeline, SEGMENTS)
        brighter = _brighter_from(video, 36)
        shifted = np.concatenate([video[:36], np.roll(video[36:], 2, axis=2)])  # the picture jumps 2 px right
        assert tl.seam_flicker(brighter, timeline, SEGMENTS) >= clean + 0.4
        assert tl.seam_flicker(shifted, timeline, SEGMENTS) >= clean + 0.4
        # The same step inside a segment, away from every seam, changes nothing.
        inside = _brighter_from(video, 42)
        assert tl.seam_flicker(inside, timeline, SEGMENTS) <= clean + 0.15


def test_a_part_boundary_is_no_seam(timelines):
    """A progressive prompt asks for a change at its part boundary: a seam there is not judged."""
    timeline = timelines["progressive"][0]
    video = timeline.render(H, W).frames
    assert tl.seam_flicker(video, timeline, ((0, 32), (32, 64))) is None
    assert tl.seam_flicker(video, timeline, ((0, 28), (28, 64))) == pytest.approx(1.0, abs=0.15)


def test_scores_survive_an_h264_round_trip(timelines, tmp_path):
    rows = []
    for index, timeline in enumerate(timelines["movers"] + timelines["progressive"]):
        decoded = read_video(write_video(tmp_path / f"{index}.mp4", timeline.render(H, W).frames))[0]
        rows.append(_scores(decoded, timeline))
    mean = {name: float(np.mean([row[name] for row in rows])) for name in tl.LONG_METRICS}
    # A shrinking object a few pixels across loses its shape (one window in 24) and its area trend
    # (one grow-then-shrink window) to the codec's blur: measured 0.96 and 0.92.
    assert mean["toy_long_identity"] >= 0.9
    assert mean["toy_long_motion"] >= 0.85
    assert mean["toy_long_drift"] < 0.01
    assert all(row["toy_seam_flicker"] == pytest.approx(1.0, abs=0.2) for row in rows)
