"""Ground-truth metrics for the toy world: weight-free judges of a generated toy video
against the scene its prompt describes and, for ARLON, against the video decoded from its AR codes.

Every prompt of `arlon.data.toyworld.prompt_set` carries its `SceneSpec`, so a judge knows which
objects should appear (colour, shape, motion) and, by rendering the scene with
`arlon.data.toyworld.render`, where the scene's canonical clip puts them frame by frame. No learned
model is involved; every score below is a fixed function of pixels and the scene.

Finding the objects (`analyse_video`). The toy world guarantees distinct, saturated (or white)
object colours within a scene and dull backgrounds (white never on the light one), so colour is the
key; the scene says which colours to look for.
1. Background: per pixel, the temporal median over the frames where the pixel is neither within
   OBJECT_DISTANCE of a scene colour nor next to such a pixel (soft edges); pixels covered in every
   frame (a static object) are filled from their neighbours. One (H, W, 3) estimate per video.
2. Blend fit: the renderer paints p = b + alpha (c - b) (coverage alpha of colour c over the
   background b). Each pixel is fitted, per candidate colour, for alpha and the residual; for a
   "recolour" object c may lie anywhere on the RGB segment from its start to its target colour
   (the renderer blends along it), so a recolouring object is found whatever the generator's
   timing, and the position along the segment says how far the recolour has gone.
3. Pixels: a pixel belongs to object i when the blend with object i's colour explains it
   (residual under BLEND_RESIDUAL, alpha between 0.5 and MAX_ALPHA) better than the blend with any
   other scene colour or with any palette colour the scene does not use (so an orange pixel is not
   "red"). On a clean render this is the renderer's own mask rule (coverage at least 0.5).
4. Detection: per frame, the largest 8-connected component of the object's pixels; found when its
   area is at least MIN_AREA_FRACTION of the smallest area the object has in the scene's
   canonical render (so an object that grows at another pace is still found). Centroids are
   coverage-weighted over the component and its one-pixel soft edge, as the renderer defines them.

The metrics (per video; `aggregate` takes the mean over videos):

    toy_colour_fidelity      fraction of (object, frame) pairs found            [0, 1]  higher better
    toy_shape_accuracy       fraction of objects whose voted shape is right     [0, 1]  higher better
    toy_motion_accuracy      fraction of objects whose detected motion is right [0, 1]  higher better
    toy_trajectory_error     centroid distance to the canonical render / diag   [0, 1]  lower better
    toy_layout_iou           soft foreground IoU with the reference video       [0, 1]  higher better
    toy_object_layout_iou    soft per-object IoU with the reference video       [0, 1]  higher better
    toy_temporal_flicker     1 - background roughness in time / FLICKER_SCALE   [0, 1]  higher better

The names start with `toy_` on purpose: `toy_temporal_flicker` is not VBench's temporal_flickering
(an all-pixel mean absolute frame difference on static-filtered videos); a score is called
`vbench.<dimension>` only when VBench computed it.

Measured on held-out prompts (tests/bench/metrics/test_toyworld_metrics.py checks the bounds): the
canonical renders score 1 on colour, shape and motion, trajectory error under 0.001, layout 1,
flicker above 0.99; an H.264 round trip (crf 18) costs about 0.02 on shape and flicker and about
0.1 (against the clean video) on the layout IoUs, whose objects are only a few pixels across.

Shared failure cases. An object painted in a colour other than the prompt's is not found at all (it
counts as missing for every per-object metric), and a palette colour the generator drifts towards
wins the pixel. Objects that merge with another object of a near colour, or that the generator
splits in two, are judged from their largest piece. A static object in a colour the scene does not
name becomes part of the background estimate. Objects under about 7 pixels across are hard to tell
apart once blurred (squares read as circles, crosses as diamonds).
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from arlon.data.toyworld import (
    COLOURS,
    LINEAR_MOTIONS,
    SHAPES,
    ObjectSpec,
    SceneSpec,
    ToyVideo,
    expected_direction,
    motion_direction,
    render,
)
from bench.errors import BenchError
from bench.metrics.registry import METRICS, compute_metric, metrics_of_backend, register_metric

BACKEND = "toyworld"

# ---------------------------------------------------------------------------------------------
# Thresholds (RGB distances are Euclidean on 0-255 levels)
# ---------------------------------------------------------------------------------------------

OBJECT_DISTANCE = 80.0  # nearer than this to an object colour keeps a pixel out of the background
# estimate; just under the closest palette pair (yellow-orange, 82), far under object-background contrasts
BLEND_RESIDUAL = 45.0  # a pixel farther than this from every background-colour blend is no object
MAX_ALPHA = 1.5  # blends "beyond" the object colour (more saturated) still count, up to this coverage
MIN_AREA_FRACTION = 0.3  # found = at least this share of the object's smallest canonical area
COUNTED_VISIBILITY = 0.5  # (object, frame) pairs count when the canonical render shows this share
RECOLOUR_DISTRACTOR_DISTANCE = 40.0  # a palette colour this close to a recolour segment is a blend
SHAPE_VOTE_FRAMES = 8  # frames (evenly spaced among the usable ones) that vote on an object's shape
SHAPE_BLUR_SIGMAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)  # Gaussian blurs (pixels) tried on the
# shape templates: generated edges are softer than the renderer's 1-pixel ramp
GROWTH_AREA_RATIO = 1.5  # area growth over the clip above this reads "grow", below its inverse "shrink"
RECOLOUR_PROGRESS = 0.5  # late minus early position along the recolour segment that reads "recolour"
BOUNCE_EXCURSION = 0.06  # x travel (fraction of the width) needed on both sides of a reversal
WRAP_STEP = 0.25  # a frame-to-frame jump wider than this fraction of the width is a wrap-around
FOREGROUND_DISTANCE = (30.0, 90.0)  # levels from the background estimate: surely background (a
# textured background varies by up to 30 around its mean), surely foreground
FLICKER_SCALE = 32.0  # mean second-difference (levels) at which the flicker score reaches 0
EDGE_FRAMES = 3  # frames averaged at each end of a clip to compare early and late colours

_PALETTE = {name: np.array(rgb, np.float32) for name, rgb in COLOURS.items()}


# ---------------------------------------------------------------------------------------------
# Finding the objects
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ObjectDetections:
    """One scene object in one video. masks (T, H, W) bool: largest component per frame; areas (T,)
    pixels; centroids (T, 2) xy pixels (NaN where nothing was detected); found (T,) area at least
    MIN_AREA_FRACTION of its smallest canonical area; clipped (T,) the component touches the frame
    border; whole (T,) it touches neither the border nor another object's pixels (nothing can hide
    part of it); counted (T,) the canonical render shows at
    least COUNTED_VISIBILITY of the object; recolour_progress (T,) mean position of the component's
    pixels along the recolour segment (NaN unless the object recolours and something was detected);
    coverage (T, H, W) float in [0, 1]: the object's blend alpha (0 on other objects' pixels)."""

    masks: np.ndarray
    areas: np.ndarray
    centroids: np.ndarray
    found: np.ndarray
    clipped: np.ndarray
    whole: np.ndarray
    counted: np.ndarray
    recolour_progress: np.ndarray
    coverage: np.ndarray


@dataclass(frozen=True, eq=False)
class ToyAnalysis:
    """What the judges see in one video: the scene's canonical render (`truth`), the background
    estimate (H, W, 3) float32, each object's pixels before components (n, T, H, W) bool, and the
    per-object detections."""

    truth: ToyVideo
    background: np.ndarray
    members: np.ndarray
    objects: tuple[ObjectDetections, ...]


def _check_video(video: np.ndarray, name: str = "video") -> np.ndarray:
    if not isinstance(video, np.ndarray) or video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        described = f"{video.dtype} {video.shape}" if isinstance(video, np.ndarray) else type(video).__name__
        raise BenchError(f"toy metrics expect the {name} as uint8 frames (T, H, W, 3), got {described}")
    if min(video.shape[:3]) < 1 or min(video.shape[1:3]) < 4:
        raise BenchError(f"toy metrics need at least 1 frame of 4x4 pixels, got {name} of shape {video.shape}")
    return video


@functools.lru_cache(maxsize=64)
def canonical_render(scene: SceneSpec, num_frames: int, height: int, width: int) -> ToyVideo:
    """The scene's own clip at the video's size: the ground truth the judges compare against."""
    return render(scene, num_frames, height, width, caption_text="")


def _colour_models(scene: SceneSpec) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) colours (n, 3) of each object; start == end unless the object recolours."""
    start = np.stack([_PALETTE[o.colour] for o in scene.objects])
    end = np.stack([_PALETTE[o.target_colour or o.colour] for o in scene.objects])
    return start, end


def _segment_distance(pixels: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of RGB `pixels` (..., 3) to the segment start-end, and the position along it in [0, 1]."""
    direction = end - start
    length_sq = float(direction @ direction)
    if length_sq == 0.0:
        return np.linalg.norm(pixels - start, axis=-1), np.zeros(pixels.shape[:-1], np.float32)
    position = np.clip((pixels - start) @ direction / length_sq, 0.0, 1.0)
    nearest = start + position[..., None] * direction
    return np.linalg.norm(pixels - nearest, axis=-1), position


def _distractor_colours(scene: SceneSpec, start: np.ndarray, end: np.ndarray) -> list[np.ndarray]:
    """Palette colours the scene does not use and no recolour blend passes near (e.g. orange on a
    red-to-yellow blend): a pixel nearer one of them than to its object is not that object."""
    used = {o.colour for o in scene.objects} | {o.target_colour for o in scene.objects if o.target_colour}
    distractors = []
    for name, colour in _PALETTE.items():
        if name in used:
            continue
        blend_distances = [float(_segment_distance(colour, a, b)[0]) for a, b in zip(start, end, strict=True)]
        if min(blend_distances) > RECOLOUR_DISTRACTOR_DISTANCE:
            distractors.append(colour)
    return distractors


def _neighbourhood(mask: np.ndarray) -> np.ndarray:
    """(..., H, W) bool -> pixels in the mask or 8-adjacent to it."""
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    H, W = mask.shape[-2:]
    return np.any([padded[..., dy : dy + H, dx : dx + W] for dy in range(3) for dx in range(3)], axis=0)


def _fill_from_neighbours(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(H, W, 3) with `known` (H, W) pixels kept; unknown ones take the mean of their known
    neighbours, ring by ring inwards."""
    image, known = image.copy(), known.copy()
    H, W = known.shape
    while not known.all():
        values = np.pad(np.where(known[..., None], image, 0.0), ((1, 1), (1, 1), (0, 0)))
        counts = np.pad(known.astype(np.float32), 1)
        total = sum(values[dy : dy + H, dx : dx + W] for dy in range(3) for dx in range(3))  # (H, W, 3)
        count = sum(counts[dy : dy + H, dx : dx + W] for dy in range(3) for dx in range(3))  # (H, W)
        ring = ~known & (count > 0)
        image[ring] = total[ring] / count[ring, None]
        known |= ring
    return image


def estimate_background(frames: np.ndarray, object_like: np.ndarray) -> np.ndarray:
    """Per-pixel temporal median of float frames (T, H, W, 3) over the frames where the pixel is
    not `object_like` (T, H, W) nor next to such a pixel (soft edges); pixels covered in every frame
    are filled from their neighbours. Returns (H, W, 3) float32."""
    excluded = _neighbourhood(object_like)  # (T, H, W)
    count = (~excluded).sum(axis=0)  # (H, W)
    if not count.any():  # objects everywhere: the median frame colour is all there is
        return np.broadcast_to(np.median(frames, axis=(0, 1, 2)), frames.shape[1:]).astype(np.float32)
    ordered = np.sort(np.where(excluded[..., None], np.inf, frames), axis=0)  # excluded values sort last
    low = np.clip((count - 1) // 2, 0, None)[None, ..., None]
    high = np.clip(count // 2, 0, None)[None, ..., None]
    median = 0.5 * (np.take_along_axis(ordered, low, 0) + np.take_along_axis(ordered, high, 0))[0]  # (H, W, 3)
    return _fill_from_neighbours(np.where((count > 0)[..., None], median, 0.0), count > 0).astype(np.float32)


def largest_components(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> the largest 8-connected component of each mask (N, H, W) bool."""
    N, H, W = masks.shape
    labels = np.where(masks, np.arange(1, N * H * W + 1).reshape(N, H, W), 0)
    # Each pixel takes the largest label in its 3x3 neighbourhood until nothing changes: every
    # component ends up carrying its own maximum label.
    while True:
        padded = np.pad(labels, ((0, 0), (1, 1), (1, 1)))
        grown = np.max([padded[:, dy : dy + H, dx : dx + W] for dy in range(3) for dx in range(3)], axis=0)
        grown = np.where(masks, grown, 0)
        if np.array_equal(grown, labels):
            break
        labels = grown
    sizes = np.bincount(labels.ravel(), minlength=N * H * W + 1)
    sizes[0] = 0
    flat = labels.reshape(N, H * W)
    winner = flat[np.arange(N), sizes[flat].argmax(axis=1)]  # (N,) label of the biggest component
    return (labels == winner[:, None, None]) & masks


def _line_fit(offsets: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares alpha and residual of offsets q (T, H, W, 3) along per-pixel directions d
    (H, W, 3): q ~ alpha * d."""
    length_sq = np.maximum((direction * direction).sum(-1), 1.0)  # (H, W); 1 guards d = 0
    alpha = (offsets * direction).sum(-1) / length_sq  # (T, H, W)
    return alpha, np.linalg.norm(offsets - alpha[..., None] * direction, axis=-1)


def blend_fit(
    frames: np.ndarray, background: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit each pixel p of float frames (T, H, W, 3) as a blend of the background b (H, W, 3) and
    a colour c on the segment start-end: p = b + alpha * (c - b) + residual. Returns alpha
    (coverage), |residual| (levels) and the position of c along the segment in [0, 1], each
    (T, H, W). With start == end this is the projection on the line from b to the colour."""
    offsets = frames - background  # (T, H, W, 3)
    d1, d2 = start - background, end - background  # (H, W, 3)
    alpha, residual = _line_fit(offsets, d1)
    position = np.zeros_like(alpha)
    if np.array_equal(start, end):
        return alpha, residual, position
    alpha_end, residual_end = _line_fit(offsets, d2)
    nearer_end = residual_end < residual
    alpha = np.where(nearer_end, alpha_end, alpha)
    residual = np.where(nearer_end, residual_end, residual)
    position = np.where(nearer_end, 1.0, 0.0)
    # Inside the triangle (b, start, end): q = u d1 + v d2 with u, v >= 0 (Cramer's rule on the
    # 2x2 normal equations), coverage u + v and position v / (u + v) along the segment.
    g11, g12, g22 = (d1 * d1).sum(-1), (d1 * d2).sum(-1), (d2 * d2).sum(-1)  # (H, W)
    r1, r2 = (offsets * d1).sum(-1), (offsets * d2).sum(-1)  # (T, H, W)
    determinant = np.maximum(g11 * g22 - g12 * g12, 1.0)
    u, v = (g22 * r1 - g12 * r2) / determinant, (g11 * r2 - g12 * r1) / determinant
    inside = (u >= 0) & (v >= 0)
    plane_residual = np.linalg.norm(offsets - u[..., None] * d1 - v[..., None] * d2, axis=-1)
    plane_position = np.clip(v / np.maximum(u + v, 1e-6), 0.0, 1.0)
    alpha = np.where(inside, u + v, alpha)
    residual = np.where(inside, plane_residual, residual)
    position = np.where(inside, plane_position, position)
    return alpha, residual, position


def _object_members(frames: np.ndarray, scene: SceneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each object's pixels (n, T, H, W) bool, its coverage, the blend's alpha clipped to [0, 1]
    (n, T, H, W), the position along its recolour segment (n, T, H, W) and the background
    estimate (H, W, 3). Coverage ignores the residual: near an edge, H.264 moves chroma by whole
    2x2 blocks, which spoils the residual long before the alpha."""
    start, end = _colour_models(scene)
    distances = np.stack([_segment_distance(frames, a, b)[0] for a, b in zip(start, end, strict=True)])
    background = estimate_background(frames, distances.min(axis=0) < OBJECT_DISTANCE)  # (H, W, 3)
    fits = [blend_fit(frames, background, a, b) for a, b in zip(start, end, strict=True)]
    fits += [blend_fit(frames, background, c, c) for c in _distractor_colours(scene, start, end)]
    alphas = np.stack([alpha for alpha, _, _ in fits])  # (candidates, T, H, W)
    residuals = np.stack([residual for _, residual, _ in fits])
    explained = (residuals < BLEND_RESIDUAL) & (alphas >= 0.5) & (alphas <= MAX_ALPHA)
    best = np.where(explained, residuals, np.inf).argmin(axis=0)  # (T, H, W)
    n = len(scene.objects)
    members = np.stack([explained[i] & (best == i) for i in range(n)])  # (n, T, H, W)
    coverage = np.clip(alphas[:n], 0.0, 1.0)
    positions = np.stack([position for _, _, position in fits[:n]])
    return members, coverage, positions, background


_ANALYSES: OrderedDict[tuple, ToyAnalysis] = OrderedDict()
_ANALYSIS_CACHE_SIZE = 8  # every metric of one video reads the same analysis


def analyse_video(video: np.ndarray, scene: SceneSpec) -> ToyAnalysis:
    """Find the scene's objects in `video` (uint8 (T, H, W, 3)); see the module docstring. The last
    few analyses are kept, keyed by the video's bytes and the scene, so scoring one video with
    several metrics analyses it once."""
    video = _check_video(video)
    key = (hashlib.blake2b(np.ascontiguousarray(video).data, digest_size=16).digest(), video.shape, scene)
    if key in _ANALYSES:
        _ANALYSES.move_to_end(key)
        return _ANALYSES[key]

    T, H, W, _ = video.shape
    truth = canonical_render(scene, T, H, W)
    frames = video.astype(np.float32)
    members, coverage, positions, background = _object_members(frames, scene)
    n = len(scene.objects)
    masks = largest_components(members.reshape(n * T, H, W)).reshape(n, T, H, W)
    areas = masks.sum(axis=(2, 3))  # (n, T)
    canonical_areas = truth.masks.transpose(1, 0, 2, 3).sum(axis=(2, 3))  # (n, T)
    full_areas = np.pi * truth.sizes.T**2  # (n, T) unclipped, unoccluded area
    others = members.sum(axis=0, keepdims=True) - members  # (n, T, H, W) pixels of other objects
    edge = np.ones((H, W), bool)
    edge[1:-1, 1:-1] = False
    clipped = (masks & edge).any(axis=(2, 3))  # (n, T)
    whole = ~clipped & ~(_neighbourhood(masks) & (others > 0)).any(axis=(2, 3))
    coverage = np.where(others == 0, coverage, 0.0)
    # Coverage-weighted centroids, as the renderer defines them: the component plus its soft edge
    # (the ring around it that no other object claims), each pixel weighted by its coverage.
    weights = np.where(_neighbourhood(masks), coverage, 0.0)  # (n, T, H, W)
    total = weights.sum(axis=(2, 3))
    ys, xs = np.arange(H) + 0.5, np.arange(W) + 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        centroids = np.stack(
            [(weights.sum(axis=2) * xs).sum(-1) / total, (weights.sum(axis=3) * ys).sum(-1) / total], axis=-1
        )  # (n, T, 2)
        progress = (positions * masks).sum(axis=(2, 3)) / areas  # (n, T)
    centroids = np.where((areas > 0)[..., None], centroids, np.nan)

    objects = []
    for i, obj in enumerate(scene.objects):
        # Against the object's smallest full area in the canonical clip, so that a generator whose
        # object grows or shrinks at another pace is still found.
        found = (areas[i] > 0) & (areas[i] >= MIN_AREA_FRACTION * full_areas[i].min())
        counted = canonical_areas[i] >= COUNTED_VISIBILITY * full_areas[i]
        recolour_progress = progress[i] if obj.motion == "recolour" else np.full(T, np.nan)
        objects.append(
            ObjectDetections(
                masks[i], areas[i], centroids[i], found, clipped[i], whole[i], counted, recolour_progress, coverage[i]
            )
        )
    analysis = ToyAnalysis(truth, background, members, tuple(objects))
    _ANALYSES[key] = analysis
    while len(_ANALYSES) > _ANALYSIS_CACHE_SIZE:
        _ANALYSES.popitem(last=False)
    return analysis


# ---------------------------------------------------------------------------------------------
# Shape and motion of one detected object
# ---------------------------------------------------------------------------------------------


@functools.cache
def _centroid_offset(shape: str) -> tuple[float, float]:
    """Centroid minus geometric centre of `shape`, per pixel of equal-area radius (the triangle's
    centroid sits below its box centre), measured on a large render."""
    size, extent = 0.25, 128
    scene = SceneSpec("dark", (ObjectSpec(shape, "white", "static", 0.5, 0.5, size),))
    centroid = canonical_render(scene, 1, extent, extent).centroids[0, 0]
    return tuple(float(v) for v in (centroid - extent / 2) / (size * extent))


def _template(shape: str, centroid: np.ndarray, radius_px: float, height: int, width: int) -> np.ndarray:
    """(H, W) float coverage in [0, 1] of `shape` as the toy renderer draws it, with this centroid
    (xy pixels) and equal-area radius (pixels): a white object on the dark background, rescaled."""
    offset = np.array(_centroid_offset(shape)) * radius_px
    x, y = (centroid - offset) / (width, height)
    obj = ObjectSpec(shape, "white", "static", float(x), float(y), radius_px / min(height, width))
    frame = render(SceneSpec("dark", (obj,)), 1, height, width, caption_text="").frames[0, ..., 0].astype(np.float32)
    dark, white = _dark_level(), float(COLOURS["white"][0])
    return np.clip((frame - dark) / (white - dark), 0.0, 1.0)


@functools.cache
def _dark_level() -> float:
    """Red level of the dark background: the corner of a frame with a small object in its middle."""
    obj = ObjectSpec("circle", "white", "static", 0.5, 0.5, 0.1)
    return float(render(SceneSpec("dark", (obj,)), 1, 32, 32, caption_text="").frames[0, 0, 0, 0])


@functools.cache
def _blur_taps() -> np.ndarray:
    """(len(SHAPE_BLUR_SIGMAS), 2R + 1) normalised 1-D Gaussian taps, sigma 0 being the identity."""
    radius = int(np.ceil(3 * max(SHAPE_BLUR_SIGMAS)))
    offsets = np.arange(-radius, radius + 1)
    taps = np.stack([np.exp(-0.5 * (offsets / max(sigma, 1e-3)) ** 2) for sigma in SHAPE_BLUR_SIGMAS])
    return taps / taps.sum(axis=1, keepdims=True)


def _gaussian_blurs(images: np.ndarray) -> np.ndarray:
    """(..., H, W) float -> (..., S, H, W): each image blurred by each of the S SHAPE_BLUR_SIGMAS
    (separable, zero outside the image)."""
    taps = _blur_taps()  # (S, K)
    radius = taps.shape[1] // 2
    padded = np.pad(images, [(0, 0)] * (images.ndim - 2) + [(radius, radius), (radius, radius)])
    rows = sliding_window_view(padded, taps.shape[1], axis=-1) @ taps.T  # (..., H + 2r, W, S)
    rows = np.moveaxis(rows, -1, -3)  # (..., S, H + 2r, W)
    columns = sliding_window_view(rows, taps.shape[1], axis=-2)  # (..., S, H, W, K)
    return np.einsum("...shwk,sk->...shw", columns, taps)


def shape_errors(coverage: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """How badly each toy silhouette explains a coverage map: (len(SHAPES), len(SHAPE_BLUR_SIGMAS))
    squared errors, inside `region` (H, W) bool, between coverage (H, W) float in [0, 1] and each
    shape's template of the same area (sum of coverage) and centroid, blurred by each sigma
    (generated videos are softer than the renderer's 1-pixel edge). None when the region holds
    less than one pixel of coverage."""
    weights = np.where(region, coverage, 0.0)
    area = float(weights.sum())
    if area < 1.0:
        return None
    H, W = coverage.shape
    centroid = np.array(
        [(weights.sum(0) * (np.arange(W) + 0.5)).sum() / area, (weights.sum(1) * (np.arange(H) + 0.5)).sum() / area]
    )
    radius_px = float(np.sqrt(area / np.pi))
    # Compare inside the region's bounding box, widened so that the blur sees what lies around it.
    ys, xs = np.nonzero(region)
    margin = int(np.ceil(3 * max(SHAPE_BLUR_SIGMAS)))
    window = (
        slice(max(ys.min() - margin, 0), ys.max() + margin + 1),
        slice(max(xs.min() - margin, 0), xs.max() + margin + 1),
    )
    inside = region[window]
    observed = coverage[window][inside]
    templates = np.stack([_template(shape, centroid, radius_px, H, W)[window] for shape in SHAPES])
    blurred = _gaussian_blurs(templates)  # (shapes, sigmas, h, w)
    return ((blurred[..., inside] - observed) ** 2).sum(axis=-1)  # (shapes, sigmas)


def classify_shape(coverage: np.ndarray, region: np.ndarray) -> str:
    """The shape whose silhouette, at its best blur, explains one coverage map best (`shape_errors`);
    "unknown" for an empty region."""
    errors = shape_errors(coverage, region)
    return "unknown" if errors is None else SHAPES[int(errors.min(axis=1).argmin())]


def whole_frames(detections: ObjectDetections) -> np.ndarray:
    """Indices of found frames where the object is `whole` (clipped or partly hidden silhouettes
    and areas mislead), or of every found frame when it is never whole."""
    found = np.flatnonzero(detections.found)
    whole = np.flatnonzero(detections.found & detections.whole)
    return whole if len(whole) else found


def _shape_region(mask: np.ndarray) -> np.ndarray:
    """Where a detection's shape is judged: its component and two pixels around it (soft edges)."""
    return _neighbourhood(_neighbourhood(mask))


def frame_shape(detections: ObjectDetections, t: int) -> str:
    """`classify_shape` of the detection in frame t, on its coverage around the component."""
    return classify_shape(detections.coverage[t], _shape_region(detections.masks[t]))


def voted_shape(detections: ObjectDetections) -> str:
    """Majority shape over up to SHAPE_VOTE_FRAMES evenly spaced `whole_frames`, each judged by
    `shape_errors` within two pixels of the detected component. The blur is a property of the
    video, not of a candidate shape: one sigma, the one that lets the frames' best shapes explain
    them best, applies to every vote. Ties go to the first shape in SHAPES order; "unknown" when
    the object is never found."""
    frames = whole_frames(detections)
    if len(frames) == 0:
        return "unknown"
    chosen = frames[np.unique(np.linspace(0, len(frames) - 1, SHAPE_VOTE_FRAMES).round().astype(int))]
    errors = [shape_errors(detections.coverage[t], _shape_region(detections.masks[t])) for t in chosen]
    errors = np.stack([e for e in errors if e is not None])  # (frames, shapes, sigmas); found => non-empty
    sigma = int(errors.min(axis=1).sum(axis=0).argmin())
    votes = [SHAPES[i] for i in errors[:, :, sigma].argmin(axis=1)]
    return max(SHAPES, key=votes.count)


def _edge_mean(values: np.ndarray, late: bool) -> float:
    kept = values[np.isfinite(values)]
    kept = kept[-EDGE_FRAMES:] if late else kept[:EDGE_FRAMES]
    return float(np.mean(kept))


def _area_growth(detections: ObjectDetections) -> float:
    """How much the area grows between the first and the last usable frame: exp(slope * (last -
    first)) of a least-squares line through log area against frame. Usable frames are those where
    the object is whole; when they cover less than half the found span (an object that touches
    another for long), the found frames the border does not clip. 1.0 with fewer than two (an
    object clipped by the border nearly all the time says nothing about its size)."""
    found = np.flatnonzero(detections.found)
    frames = np.flatnonzero(detections.found & detections.whole)
    if len(frames) < 2 or frames[-1] - frames[0] < (found[-1] - found[0]) / 2:
        frames = np.flatnonzero(detections.found & ~detections.clipped)
    if len(frames) < 2:
        return 1.0
    slope = np.polyfit(frames, np.log(detections.areas[frames]), 1)[0]
    return float(np.exp(slope * (frames[-1] - frames[0])))


def _is_bounce(x: np.ndarray, width: int) -> bool:
    """x (frames where found) goes one way by BOUNCE_EXCURSION of the width, then back as far."""
    if len(x) < 3 or np.any(np.abs(np.diff(x)) > WRAP_STEP * width):
        return False
    need = BOUNCE_EXCURSION * width
    for turn in (int(np.argmax(x)), int(np.argmin(x))):
        before, after = x[turn] - x[0], x[turn] - x[-1]
        if abs(before) >= need and abs(after) >= need and np.sign(before) == np.sign(after):
            return True
    return False


def detected_motion(detections: ObjectDetections, width: int) -> str:
    """The motion label (one of MOTIONS, or "unknown" when the object is found in fewer than two
    frames) read from a detected object, checked in this order:
    recolour: its colour moves at least RECOLOUR_PROGRESS along its recolour segment (only objects
        the scene recolours are tracked along a segment, so others never read "recolour");
    grow / shrink: the area grows over the clip (`_area_growth`) by more than GROWTH_AREA_RATIO or
        shrinks below its inverse;
    bounce: the x coordinate travels BOUNCE_EXCURSION of the width one way, then as far back;
    otherwise `toyworld.motion_direction` of the found centroids (a linear direction or static).
    """
    found = detections.found
    if found.sum() < 2:
        return "unknown"
    progress = detections.recolour_progress[found]
    if np.isfinite(progress).all() and _edge_mean(progress, True) - _edge_mean(progress, False) >= RECOLOUR_PROGRESS:
        return "recolour"
    growth = _area_growth(detections)
    if growth >= GROWTH_AREA_RATIO:
        return "grow"
    if growth <= 1 / GROWTH_AREA_RATIO:
        return "shrink"
    return _path_label(detections, width)


def _path_label(detections: ObjectDetections, width: int) -> str:
    """What the centroid path of an object found in two or more frames shows: "bounce", or
    `toyworld.motion_direction`'s label (a linear direction or static)."""
    found = detections.found
    if _is_bounce(detections.centroids[found, 0], width):
        return "bounce"
    centroids = np.where(found[:, None], detections.centroids, np.nan)
    return motion_direction(centroids, width).label


def expected_motion(obj: ObjectSpec) -> str:
    """The label `detected_motion` should read for a scene object: its motion (camera pans are
    slower than `motion_direction`'s static threshold, so they never change it)."""
    if obj.motion in LINEAR_MOTIONS or obj.motion == "static":
        return expected_direction(obj.motion)
    return obj.motion


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


@register_metric("toy_colour_fidelity", backend=BACKEND, version=1, inputs=("video", "scene"), higher_is_better=True)
def colour_fidelity(video: np.ndarray, scene: SceneSpec) -> float:
    """Fraction of counted (object, frame) pairs in which the object is found in its colour.

    found(i, t): the largest component of object i's pixels (the blend rule of the module
    docstring) covers at least MIN_AREA_FRACTION of object i's smallest area in the canonical
    render. Pairs count where the canonical render shows at least COUNTED_VISIBILITY of the object
    (not off screen after a wrap, not hidden behind another object).
    score = #found counted pairs / #counted pairs. Range [0, 1], higher is better; 1.0 when no pair
    counts. Failure cases: an object of the right colour in the wrong place still counts (position
    is toy_trajectory_error's job); an object far smaller than the prompt's is not found.
    """
    analysis = analyse_video(video, scene)
    found = np.stack([o.found & o.counted for o in analysis.objects])
    counted = np.stack([o.counted for o in analysis.objects])
    return float(found.sum() / counted.sum()) if counted.any() else 1.0


@register_metric("toy_shape_accuracy", backend=BACKEND, version=1, inputs=("video", "scene"), higher_is_better=True)
def shape_accuracy(video: np.ndarray, scene: SceneSpec) -> float:
    """Fraction of the scene's objects whose majority-vote shape (`voted_shape`) is the prompt's.

    Each vote compares one frame's coverage map around the detection with the toy silhouette of
    every shape drawn with the same area and centroid, blurred as much as the video is, and picks
    the least squared error (`shape_errors`). score = #objects voted right / #objects. Range
    [0, 1], higher is better; a missing object is wrong. Failure cases: objects under about 7
    pixels across blur into circles (squares) and diamonds (crosses); an object clipped by the
    frame border in every frame, or half hidden, can be misread.
    """
    analysis = analyse_video(video, scene)
    correct = [voted_shape(d) == o.shape for d, o in zip(analysis.objects, scene.objects, strict=True)]
    return float(np.mean(correct))


@register_metric("toy_motion_accuracy", backend=BACKEND, version=1, inputs=("video", "scene"), higher_is_better=True)
def motion_accuracy(video: np.ndarray, scene: SceneSpec) -> float:
    """Fraction of the scene's objects whose detected motion label (`detected_motion`) is the
    prompt's: one of the eight directions, static, bounce, grow, shrink, recolour; all thirteen
    motions are told apart. Range [0, 1], higher is better; an object found in fewer than two frames
    is wrong. Failure cases: a bounce that never reaches a wall reads as a linear move; a grow or
    shrink on a clip too short to change the area by GROWTH_AREA_RATIO reads as static; a moving
    object that also changes size reads as grow/shrink.
    """
    analysis = analyse_video(video, scene)
    width = video.shape[2]
    correct = [
        detected_motion(d, width) == expected_motion(o) for d, o in zip(analysis.objects, scene.objects, strict=True)
    ]
    return float(np.mean(correct))


def displaces(detections: ObjectDetections, width: int) -> bool:
    """Does a detected object travel? Its x reverses like a bounce (`_is_bounce`), or its median
    frame-to-frame step is at least STATIC_SPEED (`motion_direction` is not "static"), whatever its
    direction and whatever happens to its size; False when it is found in fewer than two frames."""
    if detections.found.sum() < 2:
        return False
    return _path_label(detections, width) not in ("static", "unknown")


TRAVELLING_MOTIONS = (*LINEAR_MOTIONS, "bounce")


def _travel_share(video: np.ndarray, scene: SceneSpec, travels: bool) -> float | None:
    """Share of the objects asked to travel (travels=True) / asked to be static that the video shows so."""
    asked = (lambda obj: obj.motion in TRAVELLING_MOTIONS) if travels else (lambda obj: obj.motion == "static")
    analysis = analyse_video(video, scene)
    verdicts = [
        displaces(detections, video.shape[2]) == travels
        for detections, obj in zip(analysis.objects, scene.objects, strict=True)
        if asked(obj)
    ]
    return float(np.mean(verdicts)) if verdicts else None


def motion_presence(video: np.ndarray, scene: SceneSpec) -> float | None:
    """Is there motion where the prompt asks for it? Among the scene's objects that the prompt moves
    (a linear move or a bounce), the fraction that the video shows travelling (`displaces`), in any
    direction: the presence of motion, where `toy_motion_accuracy` also asks for the right label.
    None when no object of the scene travels. Read it beside `motion_stillness`: a video in which
    everything drifts scores 1 here and 0 there."""
    return _travel_share(video, scene, travels=True)


def motion_stillness(video: np.ndarray, scene: SceneSpec) -> float | None:
    """Among the scene's objects the prompt calls static, the fraction that the video shows not
    travelling; None when none is static."""
    return _travel_share(video, scene, travels=False)


@register_metric("toy_trajectory_error", backend=BACKEND, version=1, inputs=("video", "scene"), higher_is_better=False)
def trajectory_error(video: np.ndarray, scene: SceneSpec) -> float:
    """Mean distance between detected and canonical centroids, over the frame diagonal.

    error = mean over (object, frame) pairs where the object is found and visible in the canonical
    render of |c_detected - c_canonical| / sqrt(H^2 + W^2). Range [0, 1], lower is better; 1.0
    (the worst) when no pair exists. It measures agreement with the scene's nominal start position
    and speed, which a caption only approximates and a generator cannot know exactly: a correct
    "moves right" starting elsewhere is still penalised, so compare models, not absolute values.
    Missing objects do not enter (toy_colour_fidelity counts them).
    """
    analysis = analyse_video(video, scene)
    canonical = analysis.truth.centroids.transpose(1, 0, 2)  # (n, T, 2)
    detected = np.stack([np.where(o.found[:, None], o.centroids, np.nan) for o in analysis.objects])  # (n, T, 2)
    distances = np.linalg.norm(detected - canonical, axis=-1)  # (n, T), NaN unless both exist
    if not np.isfinite(distances).any():
        return 1.0
    return float(np.nanmean(distances) / np.hypot(*video.shape[1:3]))


def foreground_weights(video: np.ndarray, scene: SceneSpec) -> np.ndarray:
    """(T, H, W) float in [0, 1]: how surely each pixel is foreground, rising linearly from 0 at
    FOREGROUND_DISTANCE[0] to 1 at FOREGROUND_DISTANCE[1] levels from the background estimate."""
    analysis = analyse_video(video, scene)
    distance = np.linalg.norm(video.astype(np.float32) - analysis.background, axis=-1)  # (T, H, W)
    low, high = FOREGROUND_DISTANCE
    return np.clip((distance - low) / (high - low), 0.0, 1.0)


def object_weights(video: np.ndarray, scene: SceneSpec) -> np.ndarray:
    """(n, T, H, W) float in [0, 1]: each object's coverage on its detected component and the ring
    around it (its soft edge), 0 elsewhere."""
    return np.stack([np.where(_neighbourhood(o.masks), o.coverage, 0.0) for o in analyse_video(video, scene).objects])


def _mean_soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean weighted Jaccard sum(min(a, b)) / sum(max(a, b)) over the leading axis of (N, H, W)
    weights in [0, 1] (the IoU when the weights are 0 or 1); an empty union agrees (1)."""
    intersection = np.minimum(a, b).sum(axis=(-2, -1))
    union = np.maximum(a, b).sum(axis=(-2, -1))
    return float(np.mean(np.where(union > 0, intersection / np.maximum(union, 1e-12), 1.0)))


def _check_reference(video: np.ndarray, reference_video: np.ndarray) -> None:
    _check_video(reference_video, "reference video")
    if reference_video.shape != video.shape:
        raise BenchError(
            f"the reference video has shape {reference_video.shape} but the video {video.shape}; "
            "decode the reference at the generated video's frame count and size"
        )


@register_metric(
    "toy_layout_iou", backend=BACKEND, version=1, inputs=("video", "scene", "reference_video"), higher_is_better=True
)
def layout_iou(video: np.ndarray, scene: SceneSpec, reference_video: np.ndarray | None = None) -> float | None:
    """Soft foreground IoU between the video and a reference video, averaged over frames.

    For ARLON the reference is the video decoded from its AR codes (latent VQ-VAE decoder, then the
    video VAE decoder): does the final video keep the coarse layout the AR model planned?
    iou_t = sum(min(F_t, R_t)) / sum(max(F_t, R_t)) (weighted Jaccard; the IoU for binary masks)
    with F, R the `foreground_weights` of each video, 1 when both are empty. Soft weights keep a
    one-level change at an edge from flipping a pixel. Range [0, 1], higher is better; None without
    a reference. Failure cases: a static object in a colour the scene does not name joins the
    background estimate; textured backgrounds under a camera pan leave a blurred estimate whose
    residue can read as foreground on blurry decodes; objects a few pixels across lose about 0.1
    to H.264 chroma subsampling alone.
    """
    if reference_video is None:
        return None
    _check_reference(video, reference_video)
    return _mean_soft_iou(foreground_weights(video, scene), foreground_weights(reference_video, scene))


@register_metric(
    "toy_object_layout_iou",
    backend=BACKEND,
    version=1,
    inputs=("video", "scene", "reference_video"),
    higher_is_better=True,
)
def object_layout_iou(video: np.ndarray, scene: SceneSpec, reference_video: np.ndarray | None = None) -> float | None:
    """Soft per-object IoU between the video and a reference video: the weighted Jaccard of each
    object's `object_weights` (its coverage on the detected component and its soft edge), averaged
    over (object, frame) pairs, 1 where neither video shows the object. Stricter than
    toy_layout_iou: each object must sit where the reference puts the object of the same colour.
    Range [0, 1], higher is better; None without a reference. Failure cases: as toy_layout_iou,
    and an object missing from one video scores 0 in every frame the other shows it.
    """
    if reference_video is None:
        return None
    _check_reference(video, reference_video)
    return _mean_soft_iou(object_weights(video, scene), object_weights(reference_video, scene))


@register_metric(
    "toy_temporal_flicker", backend=BACKEND, version=1, inputs=("video", "scene"), higher_is_better=True
)
def temporal_flicker(video: np.ndarray, scene: SceneSpec) -> float | None:
    """1 - (mean temporal roughness of background pixels) / FLICKER_SCALE, clipped to [0, 1].

    roughness = |f_t - (f_{t-1} + f_{t+1}) / 2| per pixel and channel (levels), averaged over
    t = 1..T-2 and the pixels that no object of the scene covers or borders in frames t-1, t, t+1.
    A second difference, unlike a frame difference, is near zero for a background that pans at a
    steady speed, so camera motion is not flicker; frames that jump or brighten and darken are.
    A clean static video scores 1, H.264 noise costs a few hundredths, uniform noise scores 0.
    Range [0, 1], higher is better; None for clips shorter than 3 frames or without background.
    This is not VBench's temporal_flickering (see the module docstring).
    Failure cases: objects in a colour the scene does not name count as background, so their motion
    reads as flicker; a frame-shuffled clip on a still background does not flicker by this measure.
    """
    if _check_video(video).shape[0] < 3:
        return None
    analysis = analyse_video(video, scene)
    covered = _neighbourhood(analysis.members.any(axis=0))  # (T, H, W)
    background = ~(covered[:-2] | covered[1:-1] | covered[2:])  # (T-2, H, W)
    if not background.any():
        return None
    frames = video.astype(np.float32)
    roughness = np.abs(frames[1:-1] - 0.5 * (frames[:-2] + frames[2:])).mean(axis=-1)  # (T-2, H, W)
    return float(np.clip(1.0 - roughness[background].mean() / FLICKER_SCALE, 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Per-object verdicts
# ---------------------------------------------------------------------------------------------

COLOUR_FOUND_SHARE = 0.5  # an object "has its colour" when found in at least this share of its counted frames


@dataclass(frozen=True)
class ObjectVerdict:
    """Does one scene object appear as the prompt says? The yes/no form of the colour, shape and
    motion metrics, for "fraction of prompts whose video matches" figures."""

    colour: bool  # found in its colour in at least COLOUR_FOUND_SHARE of its counted frames
    shape: bool  # its voted shape is the prompt's
    motion: bool  # its detected motion label is the prompt's

    @property
    def matches(self) -> bool:
        return self.colour and self.shape and self.motion


def object_verdicts(video: np.ndarray, scene: SceneSpec) -> tuple[ObjectVerdict, ...]:
    """One `ObjectVerdict` per scene object (in scene order: the primary object first)."""
    analysis = analyse_video(video, scene)
    width = video.shape[2]
    verdicts = []
    for detections, obj in zip(analysis.objects, scene.objects, strict=True):
        counted = detections.counted
        found_share = (detections.found & counted).sum() / counted.sum() if counted.any() else 1.0
        verdicts.append(
            ObjectVerdict(
                colour=bool(found_share >= COLOUR_FOUND_SHARE),
                shape=voted_shape(detections) == obj.shape,
                motion=detected_motion(detections, width) == expected_motion(obj),
            )
        )
    return tuple(verdicts)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


CLIP_INPUTS = ("video", "scene", "reference_video")  # what `score_video` passes


def clip_metrics() -> list[str]:
    """The toyworld metrics that judge a clip against its scene: those reading only CLIP_INPUTS (the
    long-video judges of `bench.metrics.toylong` also read a timeline and the DiT segments)."""
    return [name for name in metrics_of_backend(BACKEND) if set(METRICS.get(name).inputs) <= set(CLIP_INPUTS)]


def score_video(
    video: np.ndarray,
    scene: SceneSpec,
    metrics: list[str] | None = None,
    reference_video: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Scores of one uint8 (T, H, W, 3) video for `metrics` (default: every toyworld clip metric,
    `clip_metrics`); metrics that need a reference video give None without one."""
    names = clip_metrics() if metrics is None else list(metrics)
    inputs = {"video": video, "scene": scene, "reference_video": reference_video}
    return {name: compute_metric(METRICS.get(name), inputs) for name in names}
