from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import re
import time

import numpy as np
import pytest
import torch

from arlon.data import toyworld as tw
from arlon.errors import ConfigError
from arlon.presets import tiny


def _clips(split: str = "train", n: int = 60, seed: int = 0, **kwargs) -> list[tw.ToyVideo]:
    world = tw.ToyWorld(seed=seed, split=split, **kwargs)
    return [world[i] for i in range(n)]


def _interior(mask: np.ndarray) -> np.ndarray:
    """Mask pixels whose 8 neighbours are in the mask too (away from soft edges and corners)."""
    padded = np.pad(mask, 1)
    H, W = mask.shape
    return np.all([padded[dy : dy + H, dx : dx + W] for dy in range(3) for dx in range(3)], axis=0)


# ---- vocabulary and split --------------------------------------------------------------------


def test_split_holds_out_a_seventh_of_triples_but_every_attribute_pair():
    assert len(tw.ALL_TRIPLES) == len(tw.COLOURS) * len(tw.SHAPES) * len(tw.MOTIONS) == 520
    assert len(tw.HELDOUT_TRIPLES) == 75
    assert set(tw.HELDOUT_TRIPLES).isdisjoint(tw.TRAIN_TRIPLES)
    for a, b in itertools.combinations(range(3), 2):  # (colour, shape), (colour, motion), (shape, motion)
        all_pairs = {(t[a], t[b]) for t in tw.ALL_TRIPLES}
        assert {(t[a], t[b]) for t in tw.TRAIN_TRIPLES} == all_pairs


def test_training_clips_never_show_heldout_triples():
    for clip in _clips("train", 100):
        assert not any(tw.is_heldout_triple(*o.triple) for o in clip.scene.objects)


def test_heldout_clips_have_a_heldout_primary_and_training_others():
    for clip in _clips("heldout", 100):
        primary, *others = clip.scene.objects
        assert tw.is_heldout_triple(*primary.triple)
        assert not any(tw.is_heldout_triple(*o.triple) for o in others)


def test_scene_colours_are_distinct_and_white_avoids_the_light_background():
    for clip in _clips("train", 100):
        scene = clip.scene
        colours = [o.colour for o in scene.objects] + [o.target_colour for o in scene.objects if o.target_colour]
        assert len(colours) == len(set(colours))
        assert not (scene.background == "light" and "white" in colours)


# ---- determinism -------------------------------------------------------------------------------


def test_same_seed_and_index_give_the_same_clip_and_ground_truth():
    a, b = tw.ToyWorld(seed=3)[7], tw.ToyWorld(seed=3)[7]
    assert a.scene == b.scene and a.caption == b.caption
    for name in ("frames", "masks", "boxes", "centroids", "centres", "sizes", "colours", "visible"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.frames, tw.ToyWorld(seed=3)[8].frames)
    assert not np.array_equal(a.frames, tw.ToyWorld(seed=4)[7].frames)
    assert tw.ToyWorld(seed=3, split="heldout")[7].scene != a.scene


def test_video_tensor_and_batch():
    world = tw.ToyWorld(seed=0, length=5)
    video = world.video_tensor(2)
    assert video.shape == (3, 16, 32, 32) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    torch.testing.assert_close(video, torch.from_numpy(world[2].frames).float().permute(3, 0, 1, 2) / 127.5 - 1)
    videos, captions = world.batch([0, 4])
    assert videos.shape == (2, 3, 16, 32, 32) and captions == [world[0].caption, world[4].caption]
    assert len(world) == 5
    with pytest.raises(IndexError):
        world[5]


# ---- ground truth agrees with the pixels -------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (48, 64)])
def test_ground_truth_is_consistent_with_pixels(size):
    height, width = size
    checked = 0
    for clip in _clips("train", 40, seed=1, height=height, width=width):
        T, n = clip.visible.shape
        assert clip.frames.shape == (T, height, width, 3) and clip.frames.dtype == np.uint8
        assert clip.masks.shape == (T, n, height, width) and clip.masks.dtype == bool
        assert clip.boxes.shape == (T, n, 4) and clip.centroids.shape == clip.centres.shape == (T, n, 2)
        assert clip.colours.shape == (T, n, 3) and clip.sizes.shape == (T, n)
        np.testing.assert_array_equal(clip.visible, clip.masks.any(axis=(2, 3)))
        assert np.isnan(clip.boxes[~clip.visible]).all() and np.isnan(clip.centroids[~clip.visible]).all()
        for t, i in zip(*np.nonzero(clip.visible)):
            mask = clip.masks[t, i]
            ys, xs = np.nonzero(mask)
            # the box is the mask's pixel-edge bounding box
            np.testing.assert_array_equal(clip.boxes[t, i], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            # the stored (coverage-weighted) centroid is the mask's centroid up to the soft edge
            assert np.abs(clip.centroids[t, i] - [xs.mean() + 0.5, ys.mean() + 0.5]).max() < 0.75
            inside = _interior(mask)
            if inside.sum() >= 3:
                mean_rgb = clip.frames[t][inside].astype(np.float64).mean(axis=0)
                assert np.abs(mean_rgb - clip.colours[t, i]).max() < 2.0
                checked += 1
    assert checked > 500


def test_masks_of_different_objects_do_not_overlap():
    for clip in _clips("train", 60, seed=2):
        assert (clip.masks.sum(axis=1) <= 1).all()


# ---- motion labels agree with the trajectories -------------------------------------------------


def test_motion_labels_agree_with_trajectories():
    seen = set()
    for clip in _clips("train", 150, seed=5):
        width = clip.frames.shape[2]
        for i, obj in enumerate(clip.scene.objects):
            centres, sizes = clip.centres[:, i], clip.sizes[:, i]
            if obj.motion in tw.LINEAR_MOTIONS:
                assert tw.motion_direction(centres, width).label == obj.motion
                unoccluded = clip.masks[:, i].sum(axis=(1, 2)) > 0.8 * np.pi * sizes**2
                if unoccluded.all():  # what a judge sees from the masks agrees too
                    assert tw.motion_direction(clip.centroids[:, i], width).label == obj.motion
            elif obj.motion == "bounce":
                dx = np.diff(centres[:, 0])
                assert (dx > 0).any() and (dx < 0).any()  # it hits a wall within the clip
                assert np.isclose(centres[:, 1], centres[0, 1]).all()
            else:
                assert tw.motion_direction(centres, width).label == "static"
            if obj.motion == "grow":
                assert (np.diff(sizes) > 0).all()
            elif obj.motion == "shrink":
                assert (np.diff(sizes) < 0).all()
            else:
                assert np.allclose(sizes, sizes[0])
            if obj.motion == "recolour":
                np.testing.assert_allclose(clip.colours[0, i], tw.COLOURS[obj.colour])
                np.testing.assert_allclose(clip.colours[-1, i], tw.COLOURS[obj.target_colour])
            else:
                assert np.allclose(clip.colours[:, i], tw.COLOURS[obj.colour])
            # sampled objects stay fully in view for the planned 16 frames
            assert clip.visible[:, i].all()
            seen.add(obj.motion)
    assert seen == set(tw.MOTIONS)


def test_linear_moves_step_one_ar_cell_per_ar_frame_from_the_lattice():
    """At 32x32 a linear mover advances exactly 1 px per frame on each axis it moves along (4 px, one
    tiny AR code cell, per AR frame of 4 frames) and, when its start range allows, starts on the
    half-cell lattice; so its AR codes repeat one cell further on in the next AR frame."""
    on_lattice, movers = 0, 0
    for clip in _clips("train", 150, seed=7):
        for i, obj in enumerate(clip.scene.objects):
            if obj.motion not in tw.LINEAR_MOTIONS or clip.scene.camera_pan != "none":
                continue
            movers += 1
            steps = np.diff(clip.centres[:, i], axis=0)  # (T-1, 2) px per frame
            ux, uy = tw.LINEAR_MOTIONS[obj.motion]
            np.testing.assert_allclose(steps, np.broadcast_to([np.sign(round(ux, 6)), np.sign(round(uy, 6))], steps.shape), atol=1e-5)
            start = np.array([obj.x, obj.y]) / tw.START_LATTICE
            on_lattice += bool(np.allclose(start, np.round(start)))
            assert obj.size * tw._EXTENT[obj.shape] <= tw.MAX_MOVER_EXTENT + 1e-9
    assert movers > 20 and on_lattice / movers > 0.8  # the largest movers have less than a lattice step of room


def test_growing_objects_cover_more_pixels():
    scene = tw.SceneSpec("dark", (tw.ObjectSpec("triangle", "red", "grow", 0.5, 0.5, 0.09, 0.006),))
    area = tw.render(scene).masks[:, 0].sum(axis=(1, 2))
    assert area[-1] > 2 * area[0] and (np.diff(area) >= 0).all()


def test_motion_direction_labels_and_robustness():
    t = np.arange(16, dtype=np.float64)[:, None]
    assert tw.motion_direction(np.hstack([5 + t, 10 + 0 * t]), 32).label == "right"
    assert tw.motion_direction(np.hstack([10 + 0 * t, 25 - t]), 32).label == "up"
    assert tw.motion_direction(np.hstack([25 - t, 5 + t]), 32).label == "down_left"
    assert tw.motion_direction(np.hstack([10 + 0.1 * t, 10 + 0 * t]), 32).label == "static"
    wrapped = np.hstack([np.mod(20 + t, 40) - 4, 10 + 0 * t])  # leaves at the right, re-enters left
    assert tw.motion_direction(wrapped, 32).label == "right"
    hidden = np.hstack([5 + t, 10 + 0 * t])
    hidden[3:6] = np.nan
    direction = tw.motion_direction(hidden, 32)
    assert direction.label == "right" and direction.vector == pytest.approx((1.0, 0.0))
    assert tw.motion_direction(np.full((5, 2), np.nan), 32).label == "unknown"
    assert tw.expected_direction("up_left") == "up_left" and tw.expected_direction("grow") == "static"
    assert tw.expected_direction("bounce") is None


def test_camera_pan_moves_background_and_static_objects():
    obj = tw.ObjectSpec("circle", "red", "static", 0.5, 0.5, 0.12)
    panned = tw.render(tw.SceneSpec("striped", (obj,), camera_pan="left", pan_speed=0.01), 16)
    still = tw.render(tw.SceneSpec("striped", (obj,)), 16)
    assert (np.diff(panned.centres[:, 0, 0]) > 0).all()  # the camera pans left, the content moves right
    assert np.allclose(still.centres[:, 0], still.centres[0, 0])
    assert not np.array_equal(panned.frames[0, :4], panned.frames[-1, :4])  # the stripes move
    np.testing.assert_array_equal(still.frames[0, :4], still.frames[-1, :4])


# ---- captions ----------------------------------------------------------------------------------


def _motion_variants(obj: tw.ObjectSpec) -> list[str]:
    return [form.format(target=obj.target_colour) for pair in tw.MOTION_PHRASES[obj.motion] for form in pair]


def test_captions_name_every_object_and_the_background():
    max_words = tiny().text.max_length
    for clip in _clips("train", 120, seed=6) + _clips("heldout", 60, seed=6):
        text = clip.caption
        assert tw.count_words(text) <= max_words == tw.MAX_CAPTION_WORDS
        assert clip.scene.background in text
        if clip.scene.camera_pan != "none":
            assert f"pan{'s' if 'pans' in text else 'ning'} {clip.scene.camera_pan}" in text
        for obj in clip.scene.objects:
            assert f"{obj.colour} {obj.shape}" in text
            assert any(v in text for v in _motion_variants(obj)), (text, obj.motion)


def test_captions_have_several_phrasings_and_are_deterministic():
    scene = tw.ToyWorld(seed=0)[0].scene
    texts = {tw.caption(scene, np.random.default_rng(k)) for k in range(40)}
    assert len(texts) >= 6
    assert tw.caption(scene, np.random.default_rng(5)) == tw.caption(scene, np.random.default_rng(5))
    three = tw.SceneSpec(
        "striped",
        (
            tw.ObjectSpec("triangle", "magenta", "up_right", 0.2, 0.8, 0.1, 0.03),
            tw.ObjectSpec("diamond", "yellow", "down_left", 0.8, 0.2, 0.1, 0.03),
            tw.ObjectSpec("cross", "orange", "recolour", 0.5, 0.5, 0.1, target_colour="cyan"),
        ),
        camera_pan="right",
        pan_speed=0.005,
    )
    assert tw.count_words(tw.compact_caption(three)) <= 22
    assert all(tw.count_words(tw.caption(three, np.random.default_rng(k))) <= 24 for k in range(20))


# ---- reading captions back ---------------------------------------------------------------------


def _stated(description: tw.CaptionDescription) -> tw.CaptionDescription:
    """The description without the size words (which a caption gives only sometimes)."""
    objects = tuple(dataclasses.replace(o, size=None) for o in description.objects)
    return dataclasses.replace(description, objects=objects)


@functools.cache
def _generated_scenes(n: int) -> list[tw.SceneSpec]:
    scenes = [tw.sample_scene(np.random.default_rng([7, i]), split) for i in range(n) for split in tw.SPLITS]
    return scenes + [p.scene for p in tw.prompt_set("heldout", len(tw.HELDOUT_TRIPLES))]


def test_every_generated_caption_parses_back_into_what_it_states():
    seen = collections.Counter()
    for scene in _generated_scenes(150):
        texts = [tw.caption(scene, np.random.default_rng([scene.seed, k]), max_words=None) for k in range(3)]
        texts += [tw.caption(scene, np.random.default_rng([scene.seed, 1])), tw.compact_caption(scene)]
        for text in texts:
            parsed = tw.parse_caption(text)
            assert _stated(parsed) == tw.describe(scene), text
            for said, obj in zip(parsed.objects, scene.objects):
                assert said.size in (None, "large" if obj.size > 0.155 else "small"), text
            seen.update({"objects": len(scene.objects) == 3, "pan": scene.camera_pan != "none", "large": "large" in text,
                         "comma list": ", a " in text, "setting first": text.startswith(("on a", "over a", "against a")),
                         "background first": " background with " in text, "compact": text == tw.compact_caption(scene)})
            seen.update(o.motion for o in scene.objects)
            seen.update({scene.background})
    # The sample covers every construct of the generator: several objects, pans, sizes, the templates, all words.
    constructs = ["objects", "pan", "large", "comma list", "setting first", "background first", "compact"]
    assert all(seen[name] > 0 for name in [*constructs, *tw.MOTIONS, *tw.BACKGROUNDS]), seen


@pytest.mark.parametrize("motion", tw.MOTIONS)
def test_every_phrasing_of_every_motion_parses(motion):
    for pair in tw.MOTION_PHRASES[motion]:
        for form in pair:
            phrase = form.format(target="blue")
            for text in (f"a small red circle {phrase} on a dark background", f"a light background with an orange cross {phrase}"):
                (obj,) = tw.parse_caption(text).objects
                assert (obj.motion, obj.target_colour) == (motion, "blue" if motion == "recolour" else None), text
    scene = tw.SceneSpec("dark", (tw.ObjectSpec("circle", "red", motion, 0.5, 0.5, 0.1, 0.02, target_colour="blue" if motion == "recolour" else None),))
    texts = {tw.caption(scene, np.random.default_rng(k)) for k in range(60)}
    if motion not in ("grow", "shrink"):
        assert any(tw.parse_caption(t).objects[0].size == "small" for t in texts)


def test_parsing_is_lenient_with_case_articles_hyphens_and_a_full_stop():
    expected = tw.parse_caption("a orange square moves up-right on a dark background")
    for text in ("An orange square moves up-right on a dark background.", "AN ORANGE SQUARE MOVES UP RIGHT ON A DARK BACKGROUND"):
        assert tw.parse_caption(text) == expected
    # "bounces back and forth and ...": the "and"s of the phrase and of the list fall where they read
    two = tw.parse_caption("a red circle bounces back and forth and a blue cross rises, as the camera pans left on a noisy background".replace(", as the camera pans left on a noisy background", " on a noisy background as the camera pans left"))
    assert [o.motion for o in two.objects] == ["bounce", "up"] and two.camera_pan == "left"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("a bear walks through a snowy forest", r"after 'a' expected a size \(small, large\), a colour \(red, .*, not 'bear'"),
        ("red circle moves", r"it ends after 'red circle moves', where 'right', 'from'"),
        ("a red circle moves right", r"where 'on', 'over', 'against'"),
        ("a red circle moves right on a dark background, then it turns blue", r"two-part caption"),
        ("a red circle moves right; on a dark background", r"unexpected ';'"),
        ("", r"it is empty"),
        ("a red circle rises and a red square falls on a dark background", r"uses red for two objects"),
        ("a red circle turns blue and a blue square falls on a dark background", r"uses blue for two objects"),
        ("a white circle rests on a light background", r"white object on the light background"),
        ("a red circle turns red on a dark background", r"turns red, its own colour"),
        (" and ".join(f"a {c} circle rises" for c in ("red", "green", "blue", "cyan")) + " on a dark background", r"names 4 objects"),
    ],
)
def test_texts_outside_the_grammar_say_why(text, reason):
    with pytest.raises(tw.CaptionError, match=reason):
        tw.parse_caption(text)


def test_caption_scenes_show_what_the_caption_says_and_are_stable():
    for scene in _generated_scenes(150)[::15]:
        text = tw.caption(scene, np.random.default_rng([scene.seed, 1]))
        drawn = tw.caption_scene(text)
        assert tw.describe(drawn) == _stated(tw.parse_caption(text))
        assert tw.caption_scene(text) == drawn  # seeded by what the caption states
        if tw.parse_caption(tw.compact_caption(scene)) == tw.parse_caption(text):
            assert tw.caption_scene(tw.compact_caption(scene)) == drawn  # ... whatever the phrasing
        assert _stated(tw.parse_caption(tw.caption(drawn, np.random.default_rng(0)))) == tw.describe(scene)
        clip = tw.render(drawn, 16)
        assert clip.visible[0].all()  # every object starts in view, where the judges look for it
    large = tw.caption_scene("a large red circle rises over a striped background")
    small = tw.caption_scene("a small red circle rises over a striped background")
    assert large.objects[0].size > 0.155 > 0.115 > small.objects[0].size


def test_caption_words_are_the_words_of_generated_captions():
    words = set()
    for scene in _generated_scenes(150):
        for k in range(3):
            words.update(re.findall(r"\w+", tw.caption(scene, np.random.default_rng([scene.seed, k]), max_words=None)))
        words.update(re.findall(r"\w+", tw.compact_caption(scene)))
    words.add("small")  # generated only for objects smaller than sampled scenes hold (see the test above)
    assert words == tw.CAPTION_WORDS
    assert {"red", "circle", "bounces", "dark", "pans", "large"} <= tw.CONTENT_WORDS
    assert not {"a", "the", "on", "with", "background"} & tw.CONTENT_WORDS


# ---- evaluation prompt sets --------------------------------------------------------------------


def test_prompt_sets_are_stable_and_cover_the_heldout_triples():
    prompts = tw.prompt_set("heldout", len(tw.HELDOUT_TRIPLES), seed=0)
    assert {p.scene.objects[0].triple for p in prompts} == set(tw.HELDOUT_TRIPLES)
    assert len({p.id for p in prompts}) == len(prompts)
    assert tw.prompt_set("heldout", 5, seed=0) == prompts[:5]
    assert tw.prompt_set("heldout", 5, seed=1) != prompts[:5]
    train = tw.prompt_set("train", 20, seed=0)
    assert not any(tw.is_heldout_triple(*o.triple) for p in train for o in p.scene.objects)
    assert train[3].caption == tw.render(train[3].scene).caption
    single = tw.prompt_set("heldout", 10, seed=0, max_objects=1)
    assert all(len(p.scene.objects) == 1 for p in single)


# ---- long and progressive clips ----------------------------------------------------------------


def test_long_videos_wrap_bounce_and_hold():
    scene = tw.SceneSpec(
        "noisy",
        (
            tw.ObjectSpec("circle", "red", "right", 0.3, 0.25, 0.12, 0.04),
            tw.ObjectSpec("square", "blue", "bounce", 0.5, 0.75, 0.12, 0.06),
            tw.ObjectSpec("cross", "green", "grow", 0.8, 0.5, 0.1, 0.005),
        ),
        camera_pan="right",
        pan_speed=0.005,
    )
    clip = tw.render(scene, num_frames=96)
    assert clip.frames.shape == (96, 32, 32, 3) and clip.masks.shape == (96, 3, 32, 32)
    x = clip.centres[:, 0, 0]
    assert (np.diff(x) < 0).sum() >= 1  # it wrapped around ...
    assert ((np.diff(x) > 0) | (np.diff(x) < -20)).all()  # ... and otherwise kept moving right
    assert tw.motion_direction(clip.centres[:, 0], 32).label == "right"
    assert not clip.visible[:, 0].all() and clip.visible[-20:, 0].any()  # left the frame and came back
    bounce_x = clip.centres[:, 1, 0]
    reversals = np.sum(np.diff(np.sign(np.diff(bounce_x))) != 0)
    assert reversals >= 4 and clip.visible[:, 1].all()
    half = clip.sizes[:, 1] * np.sqrt(np.pi) / 2
    assert (bounce_x - half >= -1e-3).all() and (bounce_x + half <= 32 + 1e-3).all()
    assert clip.sizes[-1, 2] == pytest.approx(tw.SIZE_LIMITS[1] * 32)
    long_world = tw.ToyWorld(seed=0, num_frames=64, length=3)
    assert long_world[2].frames.shape == (64, 32, 32, 3)


@pytest.mark.parametrize("split", tw.SPLITS)
def test_progressive_clips_continue_their_objects(split):
    wanted = set(tw.triples_of_split(split))
    frames = 16
    for k in range(30):
        scene = tw.sample_progressive(np.random.default_rng([k, 9]), split, frames_per_part=frames)
        video = tw.render_progressive(scene, frames)
        first, second = video.parts
        n = len(scene.first.objects)
        assert video.frames.shape == (2 * frames, 32, 32, 3) and video.masks.shape == (2 * frames, n, 32, 32)
        assert video.motions == (first.motions, second.motions) == (scene.first.motions, video.scenes[1].motions)
        assert video.caption.startswith(first.caption + ", then ")
        assert video.captions == (first.caption, second.caption)
        primary = video.scenes[1].objects[0]
        assert primary.triple in wanted and scene.first.objects[0].triple in wanted
        assert primary.triple != scene.first.objects[0].triple or primary.motion == "recolour"
        assert not any(tw.is_heldout_triple(*o.triple) for o in video.scenes[1].objects[1:])
        for i in range(n):  # part 2 starts one step after part 1 ends, without a jump
            step = first.centres[-1, i] - first.centres[-2, i]
            jump = second.centres[0, i] - first.centres[-1, i]
            if scene.first.objects[i].motion == "bounce":  # it may rebound off a wall in between
                assert abs(jump[0]) <= scene.first.objects[i].speed * 32 + 1e-3 and jump[1] == 0
            elif np.abs(step).max() < 5:  # not wrapping around at the part boundary
                assert np.abs(jump - step).max() < 0.8, (k, i, scene.first.objects[i].motion)
            np.testing.assert_allclose(second.sizes[0, i], first.sizes[-1, i], atol=0.5)
        change = scene.changes[0]
        if change.colour is not None:
            np.testing.assert_allclose(second.colours[0, 0], tw.COLOURS[change.colour])
            assert f"turns {change.colour}" in video.caption


def test_progressive_caption_of_a_hand_written_scene():
    first = tw.SceneSpec("dark", (tw.ObjectSpec("circle", "red", "right", 0.2, 0.3, 0.12, 0.03),), seed=1)
    scene = tw.ProgressiveScene(first, (tw.ObjectChange("down", 0.03, colour="blue"),))
    video = tw.render_progressive(scene, 12)
    down = [p[0] for p in tw.MOTION_PHRASES["down"]]
    assert any(video.caption.endswith(f", then it turns blue and {d}") for d in down), video.caption
    assert video.motions == (("right",), ("down",))
    assert video.captions[1].startswith("a blue circle") or "blue circle" in video.captions[1]
    np.testing.assert_allclose(video.colours[11, 0], tw.COLOURS["red"])
    np.testing.assert_allclose(video.colours[12, 0], tw.COLOURS["blue"])
    assert tw.motion_direction(video.centres[:12, 0], 32).label == "right"
    assert tw.motion_direction(video.centres[12:, 0], 32).label == "down"


def test_progressive_prompt_set_matches_rendering():
    prompts = tw.progressive_prompt_set("heldout", 4, seed=0)
    assert tw.progressive_prompt_set("heldout", 2, seed=0) == prompts[:2]
    for prompt in prompts:
        video = tw.render_progressive(prompt.scene, 16)
        assert (video.caption, video.captions) == (prompt.caption, prompt.captions)


# ---- errors and speed --------------------------------------------------------------------------


def test_user_errors_are_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'circle'"):
        tw.ObjectSpec("circel", "red", "right", 0.5, 0.5, 0.1)
    with pytest.raises(ConfigError, match="target colour"):
        tw.ObjectSpec("circle", "red", "recolour", 0.5, 0.5, 0.1, target_colour="red")
    with pytest.raises(ConfigError, match="split"):
        tw.ToyWorld(split="test")
    heldout = tw.HELDOUT_TRIPLES[0]
    with pytest.raises(ConfigError, match="does not belong"):
        tw.sample_scene(np.random.default_rng(0), "train", primary=heldout)


def test_generation_is_fast():
    world = tw.ToyWorld(seed=0)
    start = time.perf_counter()
    for i in range(150):
        world[i]
    assert time.perf_counter() - start < 3.0  # 1000 clips in under 20 s: a sanity bound, not a benchmark
