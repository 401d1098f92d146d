"""The toy text-video world: procedural clips with captions and per-frame ground truth.

No pretrained weights or datasets can be downloaded here, so the tiny preset trains every ARLON stage
on a world the project generates itself. A clip shows one to three soft-edged objects on a plain or
textured background; each object carries one motion that the AR model has to plan (section 2.1):

    moves right / left / up / down / up_right / up_left / down_right / down_left,
    bounce (horizontally off the frame edges), static, grow, shrink, recolour ("turns blue"),

optionally under a slow horizontal camera pan. Captions are generated from the scene with several
phrasings, and every clip comes with the ground truth a weight-free judge needs: per-frame visible
masks, boxes, centroids, colours and each object's motion label.

Units. A `SceneSpec` is resolution-free: positions are fractions of the frame (x of the width, y of
the height, origin top left, y down), an object's `size` is the radius of the circle with the same
area as the shape, as a fraction of min(H, W) (0.10-0.17 gives objects 6-12 px across at 32x32),
speeds are fractions of the frame per frame. `render` rasterises a scene at any size and length.

Motion on the AR grid. A linear move advances exactly GRID_STEP (1/32 of the frame) per frame along
each axis it moves on, and starts sit on a half-cell lattice: at 32x32 that is one AR code cell
(4 px) per AR frame (4 video frames), so the tiny AR model continues a move by repeating the moving
object's codes one cell further on, a pattern its rotary positions make the same everywhere on the grid.

Long videos. Every motion is defined for any number of frames:
- linear moves wrap around: the object leaves at one edge and, after crossing an off-screen margin
  as wide as itself, re-enters at the opposite edge, so "moves right" stays true for 64+ frames and
  an object is never split across two edges;
- bounce reflects at the frame edges (the walls are the frame, so a bounce ignores the camera pan);
- grow and shrink change the size at a constant rate and hold at SIZE_LIMITS;
- recolour blends to the target colour over RECOLOUR_FRAMES frames and then keeps it.
The camera pan shifts the background texture and every object except bouncing ones; "the camera
pans left" means the content moves right in the image.

Train/held-out split. A (colour, shape, motion) triple with vocabulary indices (c, s, m) is held
out when (c + 2 s + 3 m) % 7 == 0: 75 of the 520 triples (14%). The rule keeps every pair of
attributes in training (each colour-shape pair loses at most 2 of 13 motions, each colour-motion
pair at most 1 of 5 shapes, each shape-motion pair at most 2 of 8 colours), so held-out prompts
test composition, not unseen words. Training scenes contain no held-out triple at all; a held-out
scene's first (primary) object has a held-out triple and its other objects have training triples.

Sampling. `sample_scene` keeps every object fully in view for PLAN_FRAMES (16) frames and keeps
the objects' planned paths apart. Colours within a scene (recolour targets included) are distinct,
and white objects never sit on the light background, so a judge can find each object by its colour.

Captions name every object's colour, shape and motion, the background and the pan, in one of
several templates and phrasings; a caption longer than MAX_CAPTION_WORDS (the tiny preset's text
length) falls back to a compact form that always fits.

Reading captions back. `parse_caption` inverts `caption` and `compact_caption` for every phrasing
they produce (a backtracking parser over the same phrase tables), and `caption_scene` draws a scene
for what a caption states, with the positions and speeds it leaves open drawn as `sample_scene`
draws them: a user's prompt file of toy captions gets the toy judges. `CAPTION_WORDS` are the words
captions can hold, the only words the tiny preset's models ever read in training.

Progressive prompts (section 4.5). The second part of a `ProgressiveScene` continues the same
objects from where the first part leaves them (same camera and texture), with a new motion for the
primary object and, optionally, a new colour from the part's first frame. Each part has its own
standalone caption (X_1, X_2 for the AR model) and the whole clip a "..., then it turns blue and
moves down" caption.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np
import torch

from arlon.data.video_io import uint8_to_video_tensor
from arlon.errors import ConfigError

# Bumped whenever the same (seed, index) renders a different clip: it is part of the training
# cache keys, so checkpoints trained on an older world are never taken for current ones.
WORLD_VERSION = 3

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 70),
    "blue": (50, 100, 250),
    "yellow": (245, 225, 40),
    "cyan": (40, 225, 235),
    "magenta": (225, 60, 225),
    "white": (245, 245, 245),
    "orange": (250, 145, 25),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")

_DIAGONAL = float(np.sqrt(0.5))
# Unit direction of each linear motion in image coordinates (x right, y down).
LINEAR_MOTIONS: dict[str, tuple[float, float]] = {
    "right": (1.0, 0.0),
    "left": (-1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up_right": (_DIAGONAL, -_DIAGONAL),
    "up_left": (-_DIAGONAL, -_DIAGONAL),
    "down_right": (_DIAGONAL, _DIAGONAL),
    "down_left": (-_DIAGONAL, _DIAGONAL),
}
MOTIONS: tuple[str, ...] = (*LINEAR_MOTIONS, "bounce", "static", "grow", "shrink", "recolour")

BACKGROUNDS: dict[str, str] = {
    "dark": "plain near-black",
    "light": "plain light grey",
    "gradient": "vertical gradient from dusky purple (top) to near-black (bottom)",
    "striped": "soft vertical grey stripes, 4 per frame width",
    "noisy": "smooth grey value noise, 8 cells per frame width",
}
CAMERA_PANS: tuple[str, ...] = ("none", "left", "right")
SPLITS: tuple[str, ...] = ("train", "heldout")

# Direction labels returned by `motion_direction`, counter-clockwise from "right" in 45 degree sectors.
DIRECTIONS: tuple[str, ...] = ("right", "up_right", "up", "up_left", "left", "down_left", "down", "down_right")

# ---------------------------------------------------------------------------------------------
# Sampling ranges (resolution-free units, see the module docstring)
# ---------------------------------------------------------------------------------------------

# Objects are 5-7 px in equal-area radius at 32x32: at 3-5 px (the first recipe) the tiny VAE's
# reconstructions kept the shape of only 41% of objects (crosses 2%, squares under half), so shape
# could not survive the VAE, let alone the VQ and AR stages.
SIZE_RANGE = (0.15, 0.22)
SIZE_LIMITS = (0.09, 0.28)  # where grow and shrink stop
GROW_START = (0.12, 0.15)
SHRINK_START = (0.22, 0.26)
GROWTH_RATE = (0.0045, 0.006)  # size change per frame
# Linear moves advance exactly GRID_STEP per frame along each axis they move on (diagonals too): one
# tiny-preset AR code cell (4 px at 32x32, an eighth of the frame) per AR frame of 4 video frames, so
# the AR codes of a moving object repeat one cell further on in the next AR frame, and starts sit
# on a half-cell lattice (START_LATTICE). At 0.6-0.9 px per frame (world version 2) a move shifted
# the codes by a fraction of a cell, and the AR model never learned to carry it across AR frames.
GRID_STEP = 1 / 32
START_LATTICE = 1 / 16
MAX_MOVER_EXTENT = 0.235  # half-extent of a linear mover: it stays in view while it travels 15 steps
BOUNCE_SPEED = (2 * GRID_STEP, 2 * GRID_STEP)  # fast enough to hit a wall within 16 frames from any start
PAN_SPEED = (0.004, 0.006)  # slow: under a third of the slowest object speed
PAN_PROBABILITY = 0.25
OBJECT_COUNT_PROBABILITIES = (0.5, 0.3, 0.2)  # 1, 2, 3 objects
RECOLOUR_FRAMES = 6
RECOLOUR_START = (2, 5)
EDGE_MARGIN = 0.03
PLAN_FRAMES = 16  # sampled objects stay in view for this many frames; longer clips wrap/bounce/hold
STATIC_SPEED = 0.012  # `motion_direction`: slower than this (fraction of the width per frame) is static
MAX_CAPTION_WORDS = 24  # the tiny preset's text length; longer phrasings fall back to the compact form

# Half-extent of each shape relative to its equal-area radius (so all shapes carry the same mass).
_EXTENT: dict[str, float] = {
    "circle": 1.0,
    "square": float(np.sqrt(np.pi) / 2),  # side 2b, area 4 b^2
    "triangle": float(np.sqrt(np.pi / 2)),  # apex up in a 2b x 2b box, area 2 b^2
    "diamond": float(np.sqrt(np.pi / 2)),  # half-diagonal b, area 2 b^2
    "cross": float(np.sqrt(np.pi / 2.56)),  # arms 2b long and 0.8b wide, area 2.56 b^2
}
_CROSS_ARM = 0.4
_WRAP_MARGIN = 0.05  # off-screen gap beyond the object's extent, wider than its 1-px soft edge
_PLACEMENT_TRIES = 20
_PATH_CHECKS = 4  # planned frames at which two objects' paths must be apart
_PATH_CLEARANCE = 0.9  # centre gap over the sum of half-extents

_BACKGROUND_RGB = {
    "dark": np.array([16, 18, 26], np.float32),
    "light": np.array([205, 205, 212], np.float32),
    "gradient_top": np.array([70, 50, 100], np.float32),
    "gradient_bottom": np.array([15, 15, 35], np.float32),
    "stripe_low": np.array([30, 32, 44], np.float32),
    "stripe_high": np.array([80, 82, 98], np.float32),
    "noise_mean": np.array([56, 58, 70], np.float32),
}
_NOISE_AMPLITUDE = 30.0
_NOISE_CELLS = 8
_STRIPES_PER_WIDTH = 4


def _check_choice(kind: str, value: object, choices: Sequence[str]) -> None:
    if value in choices:
        return
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown toy-world {kind} {value!r}{hint} (choices: {', '.join(choices)})")


# ---------------------------------------------------------------------------------------------
# Train / held-out split
# ---------------------------------------------------------------------------------------------


def is_heldout_triple(colour: str, shape: str, motion: str) -> bool:
    """Whether (colour, shape, motion) is reserved for the held-out split (rule in the module docstring)."""
    _check_choice("colour", colour, list(COLOURS))
    _check_choice("shape", shape, SHAPES)
    _check_choice("motion", motion, MOTIONS)
    c, s, m = list(COLOURS).index(colour), SHAPES.index(shape), MOTIONS.index(motion)
    return (c + 2 * s + 3 * m) % 7 == 0


ALL_TRIPLES: tuple[tuple[str, str, str], ...] = tuple((c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS)
HELDOUT_TRIPLES: tuple[tuple[str, str, str], ...] = tuple(t for t in ALL_TRIPLES if is_heldout_triple(*t))
TRAIN_TRIPLES: tuple[tuple[str, str, str], ...] = tuple(t for t in ALL_TRIPLES if not is_heldout_triple(*t))


def triples_of_split(split: str) -> tuple[tuple[str, str, str], ...]:
    _check_choice("split", split, SPLITS)
    return TRAIN_TRIPLES if split == "train" else HELDOUT_TRIPLES


# ---------------------------------------------------------------------------------------------
# Scene description
# ---------------------------------------------------------------------------------------------


def _content_velocity(camera_pan: str, pan_speed: float) -> float:
    # A camera panning left makes the content move right.
    return {"none": 0.0, "left": pan_speed, "right": -pan_speed}[camera_pan]


@dataclass(frozen=True)
class ObjectSpec:
    """One object. `speed`: frame fraction per frame for moves and bounce, size per frame for
    grow/shrink, unused otherwise. `heading`: +1 starts a bounce rightwards, -1 leftwards."""

    shape: str
    colour: str
    motion: str
    x: float
    y: float
    size: float
    speed: float = 0.0
    target_colour: str | None = None  # recolour only
    recolour_start: int = 0  # frame at which the recolour blend begins
    heading: int = 1

    def __post_init__(self):
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("colour", self.colour, list(COLOURS))
        _check_choice("motion", self.motion, MOTIONS)
        if self.motion == "recolour":
            if self.target_colour is None:
                raise ConfigError("motion 'recolour' needs a target_colour (the colour the object turns)")
            _check_choice("colour", self.target_colour, list(COLOURS))
            if self.target_colour == self.colour:
                raise ConfigError(f"a recolouring object needs a target colour other than its own ({self.colour!r})")
        if self.size <= 0:
            raise ConfigError(f"object size must be positive, got {self.size}")

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.motion)


@dataclass(frozen=True)
class SceneSpec:
    """A whole clip. Objects are painted in order (later ones in front); the first is the primary
    object that the split rule constrains. `seed` fixes the noise texture and the caption phrasing;
    `camera_offset` is the background's pan offset at frame 0 (frame fraction)."""

    background: str
    objects: tuple[ObjectSpec, ...]
    camera_pan: str = "none"
    pan_speed: float = 0.0
    seed: int = 0
    camera_offset: float = 0.0

    def __post_init__(self):
        _check_choice("background", self.background, list(BACKGROUNDS))
        _check_choice("camera pan", self.camera_pan, CAMERA_PANS)
        if not self.objects:
            raise ConfigError("a toy scene needs at least one object")

    @property
    def content_velocity(self) -> float:
        """Horizontal image velocity of the world under the pan (frame fraction per frame)."""
        return _content_velocity(self.camera_pan, self.pan_speed)

    @property
    def motions(self) -> tuple[str, ...]:
        return tuple(o.motion for o in self.objects)


@dataclass(frozen=True, eq=False)
class ToyVideo:
    """A rendered clip and its ground truth, in pixels (x right, y down, pixel (i, j) spans [j, j+1) x [i, i+1)).

    frames (T, H, W, 3) uint8; masks (T, n, H, W) bool: pixels where the object's visible coverage
    (after occlusion) is at least 0.5; boxes (T, n, 4) xyxy float32 pixel-edge bounds of the mask;
    centroids (T, n, 2) xy float32 coverage-weighted centroid of the visible object (boxes and
    centroids are NaN where `visible` is False); centres (T, n, 2) the shape's geometric centre,
    defined even off screen; sizes (T, n) equal-area radius in pixels; colours (T, n, 3) float32 RGB;
    visible (T, n) bool.
    """

    frames: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    centroids: np.ndarray
    centres: np.ndarray
    sizes: np.ndarray
    colours: np.ndarray
    visible: np.ndarray
    motions: tuple[str, ...]
    caption: str
    scene: SceneSpec

    def video_tensor(self) -> torch.Tensor:
        """float (3, T, H, W) in [-1, 1]."""
        return uint8_to_video_tensor(self.frames)


# ---------------------------------------------------------------------------------------------
# Trajectories
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Track:
    centres: np.ndarray  # (T, 2) xy in frame fractions
    sizes: np.ndarray  # (T,) equal-area radius, fraction of min(H, W)
    colours: np.ndarray  # (T, 3) RGB
    headings: np.ndarray  # (T,) +1 / -1: current horizontal direction of a bounce
    extent: float  # half-extent relative to size, of the object's shape


def _object_track(obj: ObjectSpec, t: np.ndarray, scale_x: float, scale_y: float, content_velocity: float) -> _Track:
    """Where an object is at frames `t`. scale_x = min(H, W) / W turns a size into a width fraction."""
    if obj.motion == "grow":
        sizes = np.minimum(obj.size + obj.speed * t, max(SIZE_LIMITS[1], obj.size))
    elif obj.motion == "shrink":
        sizes = np.maximum(obj.size - obj.speed * t, min(SIZE_LIMITS[0], obj.size))
    else:
        sizes = np.full(t.shape, obj.size)
    extent = float(sizes.max()) * _EXTENT[obj.shape]
    headings = np.full(t.shape, obj.heading)

    if obj.motion == "bounce":
        lo, hi = extent * scale_x, 1.0 - extent * scale_x
        span = hi - lo
        if span <= 0:  # wider than the frame: nowhere to bounce
            x = np.full(t.shape, 0.5)
        else:
            # Unfold the reflections: position on a circle of length 2*span, folded back onto [lo, hi].
            phase = np.mod(obj.x - lo + obj.heading * obj.speed * t, 2 * span)
            x = lo + np.where(phase <= span, phase, 2 * span - phase)
            headings = np.where(phase < span, obj.heading, -obj.heading)
        y = np.full(t.shape, obj.y)
    else:
        ux, uy = LINEAR_MOTIONS.get(obj.motion, (0.0, 0.0))
        x = obj.x + (obj.speed * ux + content_velocity) * t
        y = obj.y + obj.speed * uy * t
        # Wrap around a torus wider than the frame by the object's extent plus a gap, so the object
        # has fully left before it re-enters at the opposite edge.
        margin_x = extent * scale_x + _WRAP_MARGIN
        margin_y = extent * scale_y + _WRAP_MARGIN
        x = np.mod(x + margin_x, 1 + 2 * margin_x) - margin_x
        y = np.mod(y + margin_y, 1 + 2 * margin_y) - margin_y

    colour = np.array(COLOURS[obj.colour], np.float64)
    colours = np.broadcast_to(colour, (len(t), 3))
    if obj.motion == "recolour":
        blend = np.clip((t - obj.recolour_start) / RECOLOUR_FRAMES, 0.0, 1.0)[:, None]
        colours = (1 - blend) * colour + blend * np.array(COLOURS[obj.target_colour], np.float64)
    return _Track(np.stack([x, y], axis=1), sizes, np.asarray(colours), headings, _EXTENT[obj.shape])


# ---------------------------------------------------------------------------------------------
# Sampling scenes
# ---------------------------------------------------------------------------------------------


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _free_colours(taken: set[str], background: str) -> list[str]:
    return [c for c in COLOURS if c not in taken and not (c == "white" and background == "light")]


def _start_range(extent: float, travel: float) -> tuple[float, float]:
    """Start interval on one axis that keeps an object of this extent in view while it travels."""
    lo, hi = extent + EDGE_MARGIN, 1.0 - extent - EDGE_MARGIN
    start_lo, start_hi = lo - min(0.0, travel), hi - max(0.0, travel)
    if start_lo > start_hi:  # cannot stay in view: start where it stays longest
        middle = float(np.clip((start_lo + start_hi) / 2, lo, hi))
        return middle, middle
    return start_lo, start_hi


def _object_motion_parameters(
    rng: np.random.Generator, motion: str, size: float | None = None
) -> tuple[float, float]:
    """(size, speed) for a motion; an explicit size (a continuing object) is kept."""
    if motion == "grow":
        return (_uniform(rng, GROW_START) if size is None else size), _uniform(rng, GROWTH_RATE)
    if motion == "shrink":
        return (_uniform(rng, SHRINK_START) if size is None else size), _uniform(rng, GROWTH_RATE)
    if motion in LINEAR_MOTIONS:
        ux, uy = LINEAR_MOTIONS[motion]
        if size is None:
            largest = min(SIZE_RANGE[1], MAX_MOVER_EXTENT / max(_EXTENT.values()))
            size = _uniform(rng, (SIZE_RANGE[0], largest))
        return size, GRID_STEP / max(abs(ux), abs(uy))
    size = _uniform(rng, SIZE_RANGE) if size is None else size
    if motion == "bounce":
        return size, _uniform(rng, BOUNCE_SPEED)
    return size, 0.0


def _planned_extent(shape: str, motion: str, size: float, speed: float, plan_frames: int) -> float:
    if motion == "grow":
        size = min(size + speed * (plan_frames - 1), SIZE_LIMITS[1])
    return size * _EXTENT[shape]


def _recolour_start(rng: np.random.Generator, plan_frames: int) -> int:
    """A start frame that lets the blend finish inside the planned frames where possible."""
    high = min(RECOLOUR_START[1], max(0, plan_frames - 1 - RECOLOUR_FRAMES))
    low = min(RECOLOUR_START[0], high)
    return int(rng.integers(low, high + 1))


def _sample_object(
    rng: np.random.Generator,
    triple: tuple[str, str, str],
    taken: set[str],
    background: str,
    content_velocity: float,
    plan_frames: int,
    placed: list[_Track],
    size: float | None = None,
    target: str | None = None,
) -> tuple[ObjectSpec, _Track] | None:
    """An object of `triple` whose planned path keeps clear of the `placed` paths, or None. `size`
    and a recolour `target` are drawn unless given (a caption read back may state them)."""
    colour, shape, motion = triple
    size, speed = _object_motion_parameters(rng, motion, size)
    recolour_start, heading = 0, 1
    if motion == "recolour":
        if target is None:
            target = str(rng.choice(_free_colours(taken | {colour}, background)))
        recolour_start = _recolour_start(rng, plan_frames)
    else:
        target = None
    extent = _planned_extent(shape, motion, size, speed, plan_frames)
    if motion == "bounce":
        heading = int(rng.choice([-1, 1]))
        lo, hi = extent, 1.0 - extent
        # Start far enough from the wall ahead that the clip shows the approach and the rebound.
        last = max(0.0, min(plan_frames - 4, (hi - lo) / speed))
        hit_frame = _uniform(rng, (min(2.0, last), last))
        x = hi - speed * hit_frame if heading > 0 else lo + speed * hit_frame
        x_range = (x, x)
        y_range = _start_range(extent, 0.0)
    else:
        ux, uy = LINEAR_MOTIONS.get(motion, (0.0, 0.0))
        travel = plan_frames - 1
        x_range = _start_range(extent, (speed * ux + content_velocity) * travel)
        y_range = _start_range(extent, speed * uy * travel)
    times = np.linspace(0.0, plan_frames - 1, _PATH_CHECKS)
    for _ in range(_PLACEMENT_TRIES):
        x, y = _uniform(rng, x_range), _uniform(rng, y_range)
        if motion != "bounce":
            x, y = _on_lattice(x, x_range), _on_lattice(y, y_range)
        obj = ObjectSpec(shape, colour, motion, x, y, size, speed, target, recolour_start, heading)
        track = _object_track(obj, times, 1.0, 1.0, content_velocity)
        # Paths may touch but not overlap much, so no object hides another for long.
        if all(_paths_apart(track, other) for other in placed):
            return obj, track
    return None


def _on_lattice(value: float, bounds: tuple[float, float]) -> float:
    """The START_LATTICE point nearest `value` inside `bounds`, or `value` when none is inside."""
    low, high = np.ceil(bounds[0] / START_LATTICE - 1e-9), np.floor(bounds[1] / START_LATTICE + 1e-9)
    if low > high:
        return value
    return float(np.clip(np.round(value / START_LATTICE), low, high) * START_LATTICE)


def _paths_apart(track: _Track, other: _Track) -> bool:
    gap = np.hypot(*(track.centres - other.centres).T)  # (checks,)
    reach = track.sizes * track.extent + other.sizes * other.extent
    return bool(np.all(gap > _PATH_CLEARANCE * reach))


def _sample_training_triple(rng: np.random.Generator, free: list[str]) -> tuple[str, str, str]:
    while True:
        triple = (str(rng.choice(free)), str(rng.choice(SHAPES)), str(rng.choice(MOTIONS)))
        if not is_heldout_triple(*triple):
            return triple


def sample_scene(
    rng: np.random.Generator,
    split: str = "train",
    max_objects: int = 3,
    plan_frames: int = PLAN_FRAMES,
    primary: tuple[str, str, str] | None = None,
) -> SceneSpec:
    """Draw a scene of `split`; objects stay in view for `plan_frames` frames. `primary` forces the
    first object's (colour, shape, motion), which must belong to `split`."""
    _check_choice("split", split, SPLITS)
    if not 1 <= max_objects <= len(OBJECT_COUNT_PROBABILITIES):
        raise ConfigError(f"max_objects must be between 1 and {len(OBJECT_COUNT_PROBABILITIES)}, got {max_objects}")
    if primary is None:
        triples = triples_of_split(split)
        primary = triples[int(rng.integers(len(triples)))]
    elif is_heldout_triple(*primary) != (split == "heldout"):
        raise ConfigError(f"the triple {primary} does not belong to the {split!r} split")
    backgrounds = [b for b in BACKGROUNDS if not (b == "light" and primary[0] == "white")]
    background = str(rng.choice(backgrounds))
    camera_pan, pan_speed = "none", 0.0
    if rng.random() < PAN_PROBABILITY:
        camera_pan, pan_speed = str(rng.choice(["left", "right"])), _uniform(rng, PAN_SPEED)
    content_velocity = _content_velocity(camera_pan, pan_speed)
    weights = np.array(OBJECT_COUNT_PROBABILITIES[:max_objects])
    count = 1 + int(rng.choice(max_objects, p=weights / weights.sum()))

    objects: list[ObjectSpec] = []
    tracks: list[_Track] = []
    taken: set[str] = set()
    for index in range(count):
        # The primary object goes first, into an empty frame; a secondary one that finds no room
        # gets another triple, and the scene stays smaller if none fits.
        for _ in range(1 if index == 0 else _PLACEMENT_TRIES):
            triple = primary if index == 0 else _sample_training_triple(rng, _free_colours(taken, background))
            placed = _sample_object(rng, triple, taken, background, content_velocity, plan_frames, tracks)
            if placed is not None:
                break
        if placed is None:
            break
        obj, track = placed
        taken |= {obj.colour} | ({obj.target_colour} if obj.target_colour else set())
        objects.append(obj)
        tracks.append(track)
    seed = int(rng.integers(2**31))
    return SceneSpec(background, tuple(objects), camera_pan, pan_speed, seed)


# ---------------------------------------------------------------------------------------------
# Rasterisation
# ---------------------------------------------------------------------------------------------


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Signed distance in pixels (negative inside) of a shape with half-extent `half`; exact along
    edges, which is all the 1-pixel anti-aliasing needs."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - half
    if shape == "square":
        return np.maximum(ax, ay) - half
    if shape == "triangle":  # apex at (0, -half), base from (-half, half) to (half, half)
        return np.maximum(dy - half, (2 * ax - dy - half) * np.float32(1 / np.sqrt(5)))
    if shape == "diamond":
        return (ax + ay - half) * np.float32(np.sqrt(0.5))
    arm = _CROSS_ARM * half  # cross
    return np.minimum(np.maximum(ax - half, ay - arm), np.maximum(ax - arm, ay - half))


def _coverage(shape: str, centres_px: np.ndarray, half_px: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W) float32 fraction of each pixel covered, a 1-pixel linear ramp across the edge."""
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    dx = xs[None, None, :] - centres_px[:, 0, None, None].astype(np.float32)  # (T, 1, W)
    dy = ys[None, :, None] - centres_px[:, 1, None, None].astype(np.float32)  # (T, H, 1)
    distance = _signed_distance(shape, dx, dy, half_px[:, None, None].astype(np.float32))  # (T, H, W)
    return np.clip(np.float32(0.5) - distance, 0.0, 1.0)


def _background(scene: SceneSpec, num_frames: int, height: int, width: int) -> np.ndarray:
    """Background, broadcastable to (T, H, W, 3) float32; textures move with the camera pan."""
    offsets = scene.camera_offset + scene.content_velocity * np.arange(num_frames)  # (T,) width fractions
    u = (np.arange(width) + 0.5) / width
    if scene.background in ("dark", "light"):
        return _BACKGROUND_RGB[scene.background][None, None, None, :]
    if scene.background == "gradient":
        v = ((np.arange(height) + 0.5) / height)[:, None]  # (H, 1)
        rgb = (1 - v) * _BACKGROUND_RGB["gradient_top"] + v * _BACKGROUND_RGB["gradient_bottom"]
        return rgb[None, :, None, :].astype(np.float32)  # (1, H, 1, 3)
    world_x = u[None, :] - offsets[:, None]  # (T, W): texture coordinate under each pixel
    if scene.background == "striped":
        v = 0.5 + 0.5 * np.cos(2 * np.pi * _STRIPES_PER_WIDTH * world_x)  # (T, W)
        rgb = (1 - v[..., None]) * _BACKGROUND_RGB["stripe_low"] + v[..., None] * _BACKGROUND_RGB["stripe_high"]
        return rgb[:, None, :, :].astype(np.float32)  # (T, 1, W, 3)
    # noisy: smooth value noise on a periodic grid, so the pan can scroll it forever
    rng = np.random.default_rng([scene.seed, 0])
    cells_x = _NOISE_CELLS
    cells_y = max(1, round(_NOISE_CELLS * height / width))
    grid = rng.uniform(-1.0, 1.0, size=(cells_y, cells_x))

    def cell_and_weight(coordinate: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scaled = coordinate * cells
        first = np.floor(scaled).astype(np.int64)
        fraction = scaled - first
        fraction = fraction * fraction * (3 - 2 * fraction)  # smoothstep hides the grid lines
        return first % cells, (first + 1) % cells, fraction

    r0, r1, fy = cell_and_weight((np.arange(height) + 0.5) / height, cells_y)
    rows = grid[r0] * (1 - fy[:, None]) + grid[r1] * fy[:, None]  # (H, cells_x)
    c0, c1, fx = cell_and_weight(np.mod(world_x, 1.0), cells_x)  # (T, W)
    value = rows[:, c0] * (1 - fx) + rows[:, c1] * fx  # (H, T, W)
    value = value.transpose(1, 0, 2)  # (T, H, W)
    return (_BACKGROUND_RGB["noise_mean"] + _NOISE_AMPLITUDE * value[..., None]).astype(np.float32)


def render(
    scene: SceneSpec, num_frames: int = 16, height: int = 32, width: int = 32, caption_text: str | None = None
) -> ToyVideo:
    """Rasterise a scene and its ground truth. The caption defaults to `caption(scene, ...)` drawn
    with the scene's own seed, so the same scene always gets the same text."""
    if num_frames < 1 or height < 4 or width < 4:
        raise ConfigError(f"toy clips need at least 1 frame of 4x4 pixels, got {num_frames}x{height}x{width}")
    t = np.arange(num_frames, dtype=np.float64)
    short_side = min(height, width)
    scale = (short_side / width, short_side / height)
    tracks = [_object_track(o, t, scale[0], scale[1], scene.content_velocity) for o in scene.objects]
    centres_px = np.stack([tr.centres * (width, height) for tr in tracks], axis=1)  # (T, n, 2)
    sizes_px = np.stack([tr.sizes * short_side for tr in tracks], axis=1)  # (T, n)
    colours = np.stack([tr.colours for tr in tracks], axis=1).astype(np.float32)  # (T, n, 3)

    coverage = np.stack(
        [
            _coverage(o.shape, centres_px[:, i], sizes_px[:, i] * _EXTENT[o.shape], height, width)
            for i, o in enumerate(scene.objects)
        ]
    )  # (n, T, H, W)
    # Later objects are in front: an object's visible coverage is what every object above lets through.
    visible_coverage = np.empty_like(coverage)
    transmitted = np.ones(coverage.shape[1:], np.float32)  # (T, H, W)
    for i in reversed(range(len(scene.objects))):
        visible_coverage[i] = coverage[i] * transmitted
        transmitted *= 1 - coverage[i]

    image = _background(scene, num_frames, height, width) * transmitted[..., None]  # (T, H, W, 3)
    for i in range(len(scene.objects)):
        image = image + visible_coverage[i][..., None] * colours[:, i, None, None, :]
    frames = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    masks = visible_coverage >= 0.5  # (n, T, H, W)
    visible = masks.any(axis=(2, 3))  # (n, T)
    weight = visible_coverage.sum(axis=(2, 3))  # (n, T)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (visible_coverage.sum(axis=2) * (np.arange(width) + 0.5)).sum(-1) / weight
        cy = (visible_coverage.sum(axis=3) * (np.arange(height) + 0.5)).sum(-1) / weight
    centroids = np.where(visible[..., None], np.stack([cx, cy], axis=-1), np.nan)  # (n, T, 2)
    columns, rows = masks.any(axis=2), masks.any(axis=3)  # (n, T, W), (n, T, H)
    boxes = np.stack(
        [
            columns.argmax(-1),
            rows.argmax(-1),
            width - columns[..., ::-1].argmax(-1),
            height - rows[..., ::-1].argmax(-1),
        ],
        axis=-1,
    ).astype(np.float32)  # (n, T, 4) xyxy, pixel edges
    boxes = np.where(visible[..., None], boxes, np.nan)

    if caption_text is None:
        caption_text = caption(scene, np.random.default_rng([scene.seed, 1]))
    return ToyVideo(
        frames=frames,
        masks=masks.transpose(1, 0, 2, 3),
        boxes=boxes.transpose(1, 0, 2).astype(np.float32),
        centroids=centroids.transpose(1, 0, 2).astype(np.float32),
        centres=centres_px.astype(np.float32),
        sizes=sizes_px.astype(np.float32),
        colours=colours,
        visible=visible.T,
        motions=scene.motions,
        caption=caption_text,
        scene=scene,
    )


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------

# (finite, participle) phrasings per motion; the first is the compact one. {target}: recolour target.
MOTION_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "right": (
        ("moves right", "moving right"),
        ("moves from left to right", "moving from left to right"),
        ("slides to the right", "sliding to the right"),
        ("moves rightwards", "moving rightwards"),
    ),
    "left": (
        ("moves left", "moving left"),
        ("moves from right to left", "moving from right to left"),
        ("slides to the left", "sliding to the left"),
        ("moves leftwards", "moving leftwards"),
    ),
    "up": (
        ("moves up", "moving up"),
        ("moves from bottom to top", "moving from bottom to top"),
        ("rises", "rising"),
        ("moves upwards", "moving upwards"),
    ),
    "down": (
        ("moves down", "moving down"),
        ("moves from top to bottom", "moving from top to bottom"),
        ("falls", "falling"),
        ("moves downwards", "moving downwards"),
    ),
    "up_right": (
        ("moves up-right", "moving up-right"),
        ("moves diagonally up-right", "moving diagonally up-right"),
        ("drifts towards the top right", "drifting towards the top right"),
    ),
    "up_left": (
        ("moves up-left", "moving up-left"),
        ("moves diagonally up-left", "moving diagonally up-left"),
        ("drifts towards the top left", "drifting towards the top left"),
    ),
    "down_right": (
        ("moves down-right", "moving down-right"),
        ("moves diagonally down-right", "moving diagonally down-right"),
        ("drifts towards the bottom right", "drifting towards the bottom right"),
    ),
    "down_left": (
        ("moves down-left", "moving down-left"),
        ("moves diagonally down-left", "moving diagonally down-left"),
        ("drifts towards the bottom left", "drifting towards the bottom left"),
    ),
    "bounce": (
        ("bounces", "bouncing"),
        ("bounces from side to side", "bouncing from side to side"),
        ("bounces between the walls", "bouncing between the walls"),
        ("bounces back and forth", "bouncing back and forth"),
    ),
    "static": (
        ("stays still", "staying still"),
        ("stays in place", "staying in place"),
        ("does not move", "not moving"),
        ("rests", "resting"),
    ),
    "grow": (
        ("grows", "growing"),
        ("grows bigger", "growing bigger"),
        ("gets larger", "getting larger"),
        ("expands", "expanding"),
    ),
    "shrink": (
        ("shrinks", "shrinking"),
        ("gets smaller", "getting smaller"),
        ("shrinks in size", "shrinking in size"),
        ("contracts", "contracting"),
    ),
    "recolour": (
        ("turns {target}", "turning {target}"),
        ("changes colour to {target}", "changing colour to {target}"),
        ("becomes {target}", "becoming {target}"),
        ("fades to {target}", "fading to {target}"),
    ),
}
_SETTING_PHRASES = ("on a {} background", "over a {} background", "against a {} background")
_PAN_PHRASES = (", while the camera pans {}", " as the camera pans {}", ", with the camera panning {}")
_BACKGROUND_FIRST = "a {} background with"  # template 2: "a dark background with <objects>"
_COMPACT_SETTING, _COMPACT_PAN = " on {} background", ", panning {}"
_SIZE_ADJECTIVE_PROBABILITY = 0.3
_SMALL_BELOW, _LARGE_ABOVE = 0.115, 0.155


def count_words(text: str) -> int:
    """Words as the hashed-words text encoder splits them (regex \\w+)."""
    return len(re.findall(r"\w+", text.lower()))


def motion_phrase(
    motion: str, rng: np.random.Generator, participle: bool = False, target_colour: str | None = None
) -> str:
    forms = MOTION_PHRASES[motion]
    return forms[int(rng.integers(len(forms)))][int(participle)].format(target=target_colour)


def _object_phrase(obj: ObjectSpec, rng: np.random.Generator, participle: bool) -> str:
    adjective = ""
    if obj.motion not in ("grow", "shrink") and rng.random() < _SIZE_ADJECTIVE_PROBABILITY:
        adjective = "small " if obj.size < _SMALL_BELOW else "large " if obj.size > _LARGE_ABOVE else ""
    return f"a {adjective}{obj.colour} {obj.shape} {motion_phrase(obj.motion, rng, participle, obj.target_colour)}"


def _join(phrases: list[str], rng: np.random.Generator) -> str:
    if len(phrases) > 2 and rng.random() < 0.5:
        return ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return " and ".join(phrases)


def compact_caption(scene: SceneSpec) -> str:
    """The shortest phrasing (at most 22 words for three objects and a pan)."""
    objects = " and ".join(
        f"{o.colour} {o.shape} " + MOTION_PHRASES[o.motion][0][0].format(target=o.target_colour) for o in scene.objects
    )
    pan = "" if scene.camera_pan == "none" else _COMPACT_PAN.format(scene.camera_pan)
    return objects + _COMPACT_SETTING.format(scene.background) + pan


def caption(scene: SceneSpec, rng: np.random.Generator, max_words: int | None = MAX_CAPTION_WORDS) -> str:
    """A caption naming every object's colour, shape and motion, the background and the pan, in one
    of several phrasings; falls back to `compact_caption` when longer than `max_words`."""
    template = int(rng.integers(4))
    participle = template >= 2
    objects = _join([_object_phrase(o, rng, participle) for o in scene.objects], rng)
    setting = _SETTING_PHRASES[int(rng.integers(len(_SETTING_PHRASES)))].format(scene.background)
    pan = ""
    if scene.camera_pan != "none":
        pan = _PAN_PHRASES[int(rng.integers(len(_PAN_PHRASES)))].format(scene.camera_pan)
    if template == 0:
        text = f"{objects} {setting}{pan}"
    elif template == 1:
        text = f"{setting}, {objects}{pan}"
    elif template == 2:
        text = f"{_BACKGROUND_FIRST.format(scene.background)} {objects}{pan}"
    else:
        text = f"{objects} {setting}{pan}"
    if max_words is not None and count_words(text) > max_words:
        return compact_caption(scene)
    return text


# ---------------------------------------------------------------------------------------------
# Reading captions back: the inverse of `caption` and `compact_caption`
# ---------------------------------------------------------------------------------------------

# Every word a caption of the grammar above can hold, split as the hashed-words text encoder splits
# text (regex \w+): the words the tiny preset's models met in training.
_CAPTION_TEMPLATES: tuple[str, ...] = (
    *(form for forms in MOTION_PHRASES.values() for pair in forms for form in pair),
    *_SETTING_PHRASES, *_PAN_PHRASES, _BACKGROUND_FIRST, _COMPACT_SETTING, _COMPACT_PAN,
    "a small large and",  # what `_object_phrase` and `_join` add around the motion phrases
)
CAPTION_WORDS: frozenset[str] = frozenset(
    word
    for text in (*_CAPTION_TEMPLATES, *COLOURS, *SHAPES, *BACKGROUNDS, *CAMERA_PANS[1:])
    for word in re.findall(r"\w+", re.sub(r"\{\w*\}", " ", text))
)
# Words of the grammar that name nothing the world draws: a prompt made only of these (and words
# outside the grammar) asks the tiny preset for nothing it can show.
_FUNCTION_WORDS = frozenset(
    {"a", "the", "to", "from", "in", "and", "on", "over", "against", "with", "while", "as", "background", "camera"}
)
CONTENT_WORDS: frozenset[str] = CAPTION_WORDS - _FUNCTION_WORDS


class CaptionError(ConfigError):
    """A text is not a caption of the toy world's grammar, or describes a scene the world cannot show."""


@dataclass(frozen=True)
class CaptionObject:
    """What a caption says about one object; `size` is "small" or "large" where the caption says so."""

    colour: str
    shape: str
    motion: str
    target_colour: str | None = None  # recolour only
    size: str | None = None


@dataclass(frozen=True)
class CaptionDescription:
    """Everything a caption states about its scene (it never states positions, speeds or timings)."""

    objects: tuple[CaptionObject, ...]
    background: str
    camera_pan: str = "none"


def describe(scene: SceneSpec) -> CaptionDescription:
    """What every caption of `scene` states (size words aside, which a caption gives only sometimes)."""
    objects = tuple(CaptionObject(o.colour, o.shape, o.motion, o.target_colour) for o in scene.objects)
    return CaptionDescription(objects, scene.background, scene.camera_pan)


# Slots of the phrase patterns and the words that fill them.
_SLOTS: dict[str, tuple[str, ...]] = {
    "<colour>": tuple(COLOURS),
    "<shape>": SHAPES,
    "<background>": tuple(BACKGROUNDS),
    "<pan>": CAMERA_PANS[1:],
    "<size>": ("small", "large"),
}
_SLOT_NAMES = {
    slot: f"{name} ({', '.join(_SLOTS[slot])})"
    for slot, name in (("<colour>", "a colour"), ("<shape>", "a shape"), ("<background>", "a background"), ("<pan>", "a pan direction"), ("<size>", "a size"))
}


def _caption_tokens(text: str) -> list[str]:
    """Lower-cased words and commas; a hyphen splits words ("up-right" reads as "up right", as the
    hashed-words encoder reads it) and one closing full stop is allowed."""
    normal = text.strip().lower().removesuffix(".").replace("-", " ")
    stray = re.search(r"[^a-z, ]", normal)
    if stray:
        raise CaptionError(f"{text!r} is not a toy-world caption: unexpected {stray.group()!r}")
    return re.findall(r"[a-z]+|,", normal)


def _pattern(phrase: str) -> tuple[str, ...]:
    return tuple(phrase.replace("-", " ").replace(",", " , ").split())


_MOTION_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (motion, _pattern(form.format(target="<colour>")))
    for motion, forms in MOTION_PHRASES.items()
    for pair in forms
    for form in pair
)
_SETTING_PATTERNS = tuple(_pattern(p.format("<background>")) for p in (*_SETTING_PHRASES, _COMPACT_SETTING))
_PAN_PATTERNS = tuple(
    dict.fromkeys(
        variant
        for phrase in (*_PAN_PHRASES, _COMPACT_PAN)
        for pattern in [_pattern(phrase.format("<pan>"))]
        for variant in (pattern, pattern[1:] if pattern[0] == "," else (",", *pattern))  # the comma is optional
    )
)
_BACKGROUND_FIRST_PATTERN = _pattern(_BACKGROUND_FIRST.format("<background>"))
_ARTICLES = (("a",), ("an",), ())  # "a orange" (as generated) and "an orange"; none in compact captions
_OBJECT_SEPARATORS = ((",",), ("and",), (",", "and"))


class _CaptionParser:
    """Backtracking recursive descent over the caption grammar; every complete reading is kept, so
    a phrase such as "bounces back and forth and ..." is read however its "and"s fall."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.farthest = 0
        self.expected: list[str] = []

    def match(self, position: int, pattern: tuple[str, ...]) -> tuple[int, dict[str, str]] | None:
        captured: dict[str, str] = {}
        for item in pattern:
            token = self.tokens[position] if position < len(self.tokens) else None
            fits = token in _SLOTS[item] if item in _SLOTS else token == item
            if not fits:
                self._missed(position, _SLOT_NAMES.get(item, repr(item)))
                return None
            if item in _SLOTS:
                captured[item] = token
            position += 1
        return position, captured

    def _missed(self, position: int, expected: str) -> None:
        if position > self.farthest:
            self.farthest, self.expected = position, []
        if position == self.farthest and expected not in self.expected:
            self.expected.append(expected)

    def captions(self) -> Iterator[tuple[CaptionDescription, int]]:
        for objects, after in self.objects(0):  # <objects> <setting> [<pan>]
            for setting in _SETTING_PATTERNS:
                if (found := self.match(after, setting)) is not None:
                    yield from self.with_pan(objects, found[1]["<background>"], found[0])
        for setting in _SETTING_PATTERNS:  # <setting>[,] <objects> [<pan>]
            if (found := self.match(0, setting)) is not None:
                for comma in ((",",), ()):
                    if (after := self.match(found[0], comma)) is not None:
                        for objects, end in self.objects(after[0]):
                            yield from self.with_pan(objects, found[1]["<background>"], end)
        for article in _ARTICLES:  # a <background> background with <objects> [<pan>]
            if (found := self.match(0, article + _BACKGROUND_FIRST_PATTERN[1:])) is not None:
                for objects, end in self.objects(found[0]):
                    yield from self.with_pan(objects, found[1]["<background>"], end)

    def with_pan(self, objects: list[CaptionObject], background: str, position: int) -> Iterator[tuple[CaptionDescription, int]]:
        yield CaptionDescription(tuple(objects), background), position
        for pan in _PAN_PATTERNS:
            if (found := self.match(position, pan)) is not None:
                yield CaptionDescription(tuple(objects), background, found[1]["<pan>"]), found[0]

    def objects(self, position: int) -> Iterator[tuple[list[CaptionObject], int]]:
        for first, after in self.object(position):
            yield [first], after
            for separator in _OBJECT_SEPARATORS:
                if (found := self.match(after, separator)) is not None:
                    for rest, end in self.objects(found[0]):
                        yield [first, *rest], end

    def object(self, position: int) -> Iterator[tuple[CaptionObject, int]]:
        for article in _ARTICLES:
            for size in (("<size>",), ()):
                found = self.match(position, article + size + ("<colour>", "<shape>"))
                if found is None:
                    continue
                after, named = found
                for motion, pattern in _MOTION_PATTERNS:
                    if (phrase := self.match(after, pattern)) is not None:
                        target = phrase[1].get("<colour>")
                        yield CaptionObject(named["<colour>"], named["<shape>"], motion, target, named.get("<size>")), phrase[0]


def parse_caption(text: str) -> CaptionDescription:
    """Read a caption of the toy world's grammar (any phrasing `caption` or `compact_caption`
    produces, in any letter case, "an" as well as "a" before a vowel, an optional closing full stop)
    back into what it states. Raises CaptionError saying where the text leaves the grammar, or why
    the scene it describes cannot be shown (the constraints `sample_scene` keeps)."""
    tokens = _caption_tokens(text)
    parser = _CaptionParser(tokens)
    readings = list(dict.fromkeys(d for d, end in parser.captions() if end == len(tokens)))
    if not readings:
        raise CaptionError(f"{text!r} is not a toy-world caption: {_stop_reason(tokens, parser)}")
    if len(readings) > 1:  # the grammar is unambiguous for what it generates; a hand-made text may not be
        raise CaptionError(f"{text!r} reads as {len(readings)} different toy scenes; rephrase it")
    description = readings[0]
    _check_describable(description, text)
    return description


def _stop_reason(tokens: list[str], parser: _CaptionParser) -> str:
    if "then" in tokens:
        return "a two-part caption (', then ...') describes two scenes; a toy prompt describes one"
    if not tokens:
        return "it is empty"
    shown = parser.expected
    if len(shown) > 4:
        expected = ", ".join(shown[:4]) + ", ..."
    else:
        expected = ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]
    read = " ".join(tokens[: parser.farthest]).replace(" ,", ",")
    if parser.farthest >= len(tokens):
        return f"it ends after {read!r}, where {expected} should follow"
    after = f"after {read!r} " if read else ""
    return f"{after}expected {expected}, not {tokens[parser.farthest]!r}"


def _check_describable(description: CaptionDescription, text: str) -> None:
    """The scene constraints of `sample_scene`, which the toy judges rely on to find objects by colour."""
    limit = len(OBJECT_COUNT_PROBABILITIES)
    if len(description.objects) > limit:
        raise CaptionError(f"{text!r} names {len(description.objects)} objects; a toy scene holds at most {limit}")
    colours = [c for o in description.objects for c in (o.colour, o.target_colour) if c is not None]
    for obj in description.objects:
        if obj.target_colour == obj.colour:
            raise CaptionError(f"{text!r}: the {obj.colour} {obj.shape} turns {obj.colour}, its own colour")
    repeated = sorted({c for c in colours if colours.count(c) > 1})
    if repeated:
        raise CaptionError(
            f"{text!r} uses {repeated[0]} for two objects (or a recolour target); the toy world gives every "
            "object its own colour, which is how its judges tell them apart"
        )
    if description.background == "light" and "white" in colours:
        raise CaptionError(f"{text!r} puts a white object on the light background, where it cannot be seen")


_CAPTION_STREAM = 3  # random stream of the scenes drawn for captions (0-2: clips and prompt sets)
_CAPTION_PLACEMENT_TRIES = 100


def caption_scene(text: str, plan_frames: int = PLAN_FRAMES) -> SceneSpec:
    """A scene that the caption `text` describes: what it states (`parse_caption`), with the
    positions, speeds, sizes and timings it leaves open drawn as `sample_scene` draws them (objects
    in view for `plan_frames` frames, paths apart). The draw is seeded by what the caption states,
    so two phrasings of the same scene give the same scene, on every machine. A held-out prompt's
    own scene is such a draw too: its caption never told the generator where the objects start."""
    description = parse_caption(text)
    key = hashlib.sha256(repr(description).encode()).digest()
    rng = np.random.default_rng([int.from_bytes(key[:8], "little"), _CAPTION_STREAM])
    pan_speed = _uniform(rng, PAN_SPEED) if description.camera_pan != "none" else 0.0
    velocity = _content_velocity(description.camera_pan, pan_speed)
    # `sample_scene` swaps a secondary object that finds no room for another; a caption fixes its
    # objects, so after half the tries they take the smallest sizes their words allow.
    for attempt in range(_CAPTION_PLACEMENT_TRIES):
        smallest = attempt >= _CAPTION_PLACEMENT_TRIES // 2
        objects: list[ObjectSpec] = []
        tracks: list[_Track] = []
        for item in description.objects:
            triple, size = (item.colour, item.shape, item.motion), _caption_size(rng, item, smallest)
            placed = _sample_object(rng, triple, set(), description.background, velocity, plan_frames, tracks, size, item.target_colour)
            if placed is None:
                break
            objects.append(placed[0])
            tracks.append(placed[1])
        else:
            return SceneSpec(description.background, tuple(objects), description.camera_pan, pan_speed, int(rng.integers(2**31)))
    raise CaptionError(f"{text!r}: its {len(description.objects)} objects find no room to move apart in one frame")


def _caption_size(rng: np.random.Generator, item: CaptionObject, smallest: bool) -> float:
    """A size `caption` would describe with the object's words ("small", "large" or none; growing
    and shrinking objects start in their own ranges, which captions never qualify)."""
    if item.motion in ("grow", "shrink"):
        bounds = GROW_START if item.motion == "grow" else SHRINK_START
    elif item.size is not None:
        bounds = (SIZE_LIMITS[0], _SMALL_BELOW) if item.size == "small" else (_LARGE_ABOVE, SIZE_RANGE[1])
    else:
        bounds = SIZE_RANGE
    return bounds[0] if smallest else _uniform(rng, bounds)


# ---------------------------------------------------------------------------------------------
# Progressive (two-part) clips
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectChange:
    """What an object does in the second part: a new motion at `speed` (units as in ObjectSpec), and
    optionally a new colour from the part's first frame ("then it turns blue and moves down")."""

    motion: str
    speed: float = 0.0
    colour: str | None = None
    target_colour: str | None = None  # motion "recolour" only
    recolour_start: int = 0

    def __post_init__(self):
        _check_choice("motion", self.motion, MOTIONS)
        if self.colour is not None:
            _check_choice("colour", self.colour, list(COLOURS))
        if self.motion == "recolour":
            if self.target_colour is None:
                raise ConfigError("motion 'recolour' needs a target_colour (the colour the object turns)")
            _check_choice("colour", self.target_colour, list(COLOURS))


@dataclass(frozen=True)
class ProgressiveScene:
    """A first scene and one change per object for the second part."""

    first: SceneSpec
    changes: tuple[ObjectChange, ...]

    def __post_init__(self):
        if len(self.changes) != len(self.first.objects):
            raise ConfigError(f"{len(self.first.objects)} objects need as many changes, got {len(self.changes)}")


@dataclass(frozen=True)
class _State:
    x: float
    y: float
    size: float
    colour: str
    heading: int


def _state_after(obj: ObjectSpec, frames: int, content_velocity: float, scale_x: float, scale_y: float) -> _State:
    """The object one step after the last frame of a `frames`-frame part, where the next part starts."""
    track = _object_track(obj, np.array([float(frames)]), scale_x, scale_y, content_velocity)
    colour = obj.colour
    if obj.motion == "recolour" and frames >= obj.recolour_start + RECOLOUR_FRAMES / 2:
        colour = obj.target_colour
    x, y = track.centres[0]
    return _State(float(x), float(y), float(track.sizes[0]), colour, int(track.headings[0]))


def continue_scene(
    scene: SceneSpec, changes: Sequence[ObjectChange], frames_per_part: int, height: int = 32, width: int = 32
) -> SceneSpec:
    """The second part's scene: the same objects, from where the first part leaves them, with their
    new motions and colours; the camera keeps panning. Only the aspect ratio of (height, width) matters."""
    short_side = min(height, width)
    objects = []
    for obj, change in zip(scene.objects, changes, strict=True):
        state = _state_after(obj, frames_per_part, scene.content_velocity, short_side / width, short_side / height)
        objects.append(
            ObjectSpec(
                shape=obj.shape,
                colour=change.colour or state.colour,
                motion=change.motion,
                x=state.x,
                y=state.y,
                size=state.size,
                speed=change.speed,
                target_colour=change.target_colour,
                recolour_start=change.recolour_start,
                heading=state.heading,
            )
        )
    offset = scene.camera_offset + scene.content_velocity * frames_per_part
    return replace(scene, objects=tuple(objects), camera_offset=offset)


def _keeps_in_view(state: _State, shape: str, motion: str, speed: float, content_velocity: float, frames: int) -> bool:
    if motion == "bounce":  # starting outside the walls would make it jump back between the walls
        extent = state.size * _EXTENT[shape]
        return extent <= state.x <= 1 - extent
    if motion == "grow" and state.size > SIZE_LIMITS[1] - 0.04:
        return False
    if motion == "shrink" and state.size < SIZE_LIMITS[0] + 0.04:
        return False
    size = state.size + (speed * (frames - 1) if motion == "grow" else 0.0)
    extent = min(size, SIZE_LIMITS[1]) * _EXTENT[shape]
    ux, uy = LINEAR_MOTIONS.get(motion, (0.0, 0.0))
    for start, velocity in ((state.x, speed * ux + content_velocity), (state.y, speed * uy)):
        end = start + velocity * (frames - 1)
        if not (extent <= start <= 1 - extent and extent <= end <= 1 - extent):
            return False
    return True


def _sample_change(
    rng: np.random.Generator,
    obj: ObjectSpec,
    state: _State,
    candidates: Sequence[tuple[str | None, str]],
    free: list[str],
    content_velocity: float,
    plan_frames: int,
) -> ObjectChange | None:
    """A random change among (new colour or None, motion) candidates that keeps the object in view."""
    for index in rng.permutation(len(candidates)):
        colour, motion = candidates[index]
        _, speed = _object_motion_parameters(rng, motion, size=state.size)
        if not _keeps_in_view(state, obj.shape, motion, speed, content_velocity, plan_frames):
            continue
        target, start = None, 0
        if motion == "recolour":
            options = [c for c in free if c != state.colour]
            if not options:
                continue
            target, start = str(rng.choice(options)), _recolour_start(rng, plan_frames)
        return ObjectChange(motion, speed, colour, target, start)
    return None


def _primary_change(
    rng: np.random.Generator,
    obj: ObjectSpec,
    state: _State,
    split: str,
    free: list[str],
    velocity: float,
    plan_frames: int,
) -> ObjectChange:
    """A new motion, with probability 0.4 also a new colour, whose triple belongs to `split`."""
    wanted = set(triples_of_split(split))
    new_colours: list[str | None] = list(free)
    colour_options = [new_colours, [None]] if rng.random() < 0.4 else [[None], new_colours]
    all_candidates = []
    for colours in colour_options:
        candidates = [
            (c, m)
            for c in colours
            for m in MOTIONS
            if (c or state.colour, obj.shape, m) in wanted
            and (c is not None or m != obj.motion or m == "recolour")  # something must change ...
            and not (c is None and m == "static" and obj.motion == "recolour")  # ... visibly
            and not (c is not None and m == "recolour")  # one colour change at a time
        ]
        change = _sample_change(rng, obj, state, candidates, free, velocity, plan_frames)
        if change is not None:
            return change
        all_candidates += [(c, m) for c, m in candidates if m != "recolour"]
    # Nothing keeps the object in view: take a change of the split anyway; it wraps around.
    all_candidates = [(c, m) for c, m in all_candidates if m != "bounce"]
    colour, motion = all_candidates[int(rng.integers(len(all_candidates)))]
    return ObjectChange(motion, _object_motion_parameters(rng, motion, size=state.size)[1], colour)


def _continuing_change(
    rng: np.random.Generator, obj: ObjectSpec, state: _State, velocity: float, plan_frames: int
) -> ObjectChange:
    """A secondary object keeps moving as before if it can, else the first training motion that
    keeps it in view; if none does (it is leaving the frame), it carries on and wraps around."""
    keep = obj.motion if obj.motion in (*LINEAR_MOTIONS, "bounce", "static") else "static"
    if is_heldout_triple(state.colour, obj.shape, keep):  # a recoloured object, now still
        keep = next(m for m in MOTIONS if m != "recolour" and not is_heldout_triple(state.colour, obj.shape, m))
    for motion in dict.fromkeys([keep, "static", "bounce", "grow", "shrink", *LINEAR_MOTIONS]):
        if is_heldout_triple(state.colour, obj.shape, motion):
            continue
        speed = obj.speed if motion == obj.motion else _object_motion_parameters(rng, motion, state.size)[1]
        if _keeps_in_view(state, obj.shape, motion, speed, velocity, plan_frames):
            return ObjectChange(motion, speed)
    return ObjectChange(keep, obj.speed if keep == obj.motion else _object_motion_parameters(rng, keep, state.size)[1])


_PROGRESSIVE_DRAWS = 50  # scenes tried until the primary object is in view where the second part begins


def sample_progressive(
    rng: np.random.Generator, split: str = "train", max_objects: int = 3, frames_per_part: int = PLAN_FRAMES
) -> ProgressiveScene:
    """A two-part scene. The primary object changes its motion (and with probability 0.4 its colour)
    to a triple of the same split; the others keep their motion where they can, else stay still. The
    primary object is fully in view where the second part begins."""
    plan_frames = min(frames_per_part, PLAN_FRAMES)
    # Parts longer than PLAN_FRAMES let a linear mover wrap: where the second part begins it may be
    # off screen, and a new motion along the other axis never brings it back. Redraw such scenes.
    for _ in range(_PROGRESSIVE_DRAWS):
        first = sample_scene(rng, split, max_objects, plan_frames)
        primary = first.objects[0]
        state = _state_after(primary, frames_per_part, first.content_velocity, 1.0, 1.0)
        extent = state.size * _EXTENT[primary.shape]
        if extent <= state.x <= 1 - extent and extent <= state.y <= 1 - extent:
            break
    velocity = first.content_velocity
    taken = {o.colour for o in first.objects} | {o.target_colour for o in first.objects if o.target_colour}
    free = _free_colours(taken, first.background)
    changes = []
    for index, obj in enumerate(first.objects):
        state = _state_after(obj, frames_per_part, velocity, 1.0, 1.0)
        if index == 0:
            change = _primary_change(rng, obj, state, split, free, velocity, plan_frames)
            free = [c for c in free if c not in (change.colour, change.target_colour)]
        else:
            change = _continuing_change(rng, obj, state, velocity, plan_frames)
        changes.append(change)
    return ProgressiveScene(first, tuple(changes))


def progressive_caption(first_caption: str, scene: ProgressiveScene, rng: np.random.Generator) -> str:
    """'<first caption>, then <what changes>', e.g. '..., then it turns blue and moves down'."""
    objects = scene.first.objects
    shapes = [o.shape for o in objects]
    clauses = []
    for obj, change in zip(objects, scene.changes, strict=True):
        is_new_motion = change.motion != obj.motion or change.motion == "recolour"
        if obj.motion in ("static", "recolour") and change.motion == "static":
            is_new_motion = False  # it was already standing still
        if change.colour is None and not is_new_motion:
            continue
        if len(objects) == 1:
            subject = "it"
        else:
            subject = f"the {obj.shape}" if shapes.count(obj.shape) == 1 else f"the {obj.colour} {obj.shape}"
        verbs = []
        if change.colour is not None:
            verbs.append(f"turns {change.colour}")
        if is_new_motion:
            verbs.append(motion_phrase(change.motion, rng, target_colour=change.target_colour))
        clauses.append(f"{subject} " + " and ".join(verbs))
    if not clauses:
        return first_caption
    return f"{first_caption}, then " + " and ".join(clauses)


_GROUND_TRUTH_ARRAYS = ("frames", "masks", "boxes", "centroids", "centres", "sizes", "colours", "visible")


@dataclass(frozen=True, eq=False)
class ProgressiveVideo:
    """A two-part clip: each part is a `ToyVideo` with its own standalone caption, scene and motion
    labels; the arrays (as in `ToyVideo`) are the two parts' concatenated along time."""

    parts: tuple[ToyVideo, ToyVideo]
    caption: str  # "<part 1>, then <what changes>"
    frames_per_part: int
    frames: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    centroids: np.ndarray
    centres: np.ndarray
    sizes: np.ndarray
    colours: np.ndarray
    visible: np.ndarray

    @property
    def captions(self) -> tuple[str, str]:
        return (self.parts[0].caption, self.parts[1].caption)

    @property
    def motions(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (self.parts[0].motions, self.parts[1].motions)

    @property
    def scenes(self) -> tuple[SceneSpec, SceneSpec]:
        return (self.parts[0].scene, self.parts[1].scene)


def render_progressive(
    scene: ProgressiveScene, frames_per_part: int = 16, height: int = 32, width: int = 32
) -> ProgressiveVideo:
    """Render both parts; the second continues the first's objects and camera without a jump."""
    second = continue_scene(scene.first, scene.changes, frames_per_part, height, width)
    parts = (render(scene.first, frames_per_part, height, width), render(second, frames_per_part, height, width))
    text = progressive_caption(parts[0].caption, scene, np.random.default_rng([scene.first.seed, 2]))
    arrays = {name: np.concatenate([getattr(part, name) for part in parts]) for name in _GROUND_TRUTH_ARRAYS}
    return ProgressiveVideo(parts, text, frames_per_part, **arrays)


# ---------------------------------------------------------------------------------------------
# Timelines: the ground truth of long and progressive videos
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyTimeline:
    """What a long video should show, part by part: `parts` = ((scene, frames), ...), where the
    scene of part k+1 continues the objects of part k from where they are after its frames
    (`continue_scene`), as `render_progressive` does. One part is a long video of one scene (its
    motions are defined for any length, see the module docstring); two or more parts are a
    progressive-prompt video (section 4.5), each part with its own caption."""

    parts: tuple[tuple[SceneSpec, int], ...]

    def __post_init__(self):
        if not self.parts or any(frames < 1 for _, frames in self.parts):
            raise ConfigError("a toy timeline needs at least one part of at least one frame")

    @property
    def num_frames(self) -> int:
        return sum(frames for _, frames in self.parts)

    @property
    def part_starts(self) -> tuple[int, ...]:
        """First frame of each part."""
        return tuple(int(x) for x in np.cumsum([0] + [frames for _, frames in self.parts[:-1]]))

    @property
    def scenes(self) -> tuple[SceneSpec, ...]:
        return tuple(scene for scene, _ in self.parts)

    def part_at(self, frame: int) -> int:
        """Index of the part that frame `frame` belongs to."""
        return int(np.searchsorted(np.asarray(self.part_starts), frame, side="right") - 1)

    def render(self, height: int = 32, width: int = 32) -> ProgressiveVideo | ToyVideo:
        """One `ToyVideo` for a single part; else the parts rendered and concatenated along time
        (arrays as in `ToyVideo`; `parts` keeps each part's own clip)."""
        if len(self.parts) == 1:
            scene, frames = self.parts[0]
            return render(scene, frames, height, width)
        clips = tuple(render(scene, frames, height, width) for scene, frames in self.parts)
        arrays = {name: np.concatenate([getattr(clip, name) for clip in clips]) for name in _GROUND_TRUTH_ARRAYS}
        return ProgressiveVideo(clips, " then ".join(c.caption for c in clips), self.parts[0][1], **arrays)


def long_timeline(scene: SceneSpec, num_frames: int) -> ToyTimeline:
    """A long video of one scene."""
    return ToyTimeline(((scene, num_frames),))


def progressive_timeline(
    scene: ProgressiveScene, frames_per_part: int, height: int = 32, width: int = 32
) -> ToyTimeline:
    """The two parts of a progressive scene, as `render_progressive` renders them."""
    second = continue_scene(scene.first, scene.changes, frames_per_part, height, width)
    return ToyTimeline(((scene.first, frames_per_part), (second, frames_per_part)))


# ---------------------------------------------------------------------------------------------
# Motion direction from a trajectory
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionDirection:
    label: str  # one of DIRECTIONS, "static", or "unknown" (fewer than two visible frames)
    vector: tuple[float, float]  # unit vector in image coordinates (y down); (0, 0) unless moving
    speed_px: float  # typical displacement per frame


def motion_direction(centroids: np.ndarray, width: int) -> MotionDirection:
    """Direction of a (T, 2) xy pixel trajectory (NaN rows = not visible), from the median step so
    that a wrap-around jump or a bounce at a wall does not decide it. Slower than STATIC_SPEED
    (fraction of `width` per frame) is "static"."""
    steps = np.diff(np.asarray(centroids, np.float64), axis=0)  # (T-1, 2)
    steps = steps[np.isfinite(steps).all(axis=1)]
    if len(steps) == 0:
        return MotionDirection("unknown", (0.0, 0.0), float("nan"))
    step = np.median(steps, axis=0)
    speed = float(np.hypot(step[0], step[1]))
    if speed < STATIC_SPEED * width:
        return MotionDirection("static", (0.0, 0.0), speed)
    angle = np.arctan2(-step[1], step[0])  # counter-clockwise from +x with y pointing up
    sector = int(np.round(angle / (np.pi / 4))) % len(DIRECTIONS)
    return MotionDirection(DIRECTIONS[sector], (float(step[0] / speed), float(step[1] / speed)), speed)


def expected_direction(motion: str) -> str | None:
    """The `motion_direction` label an object with this motion should show (None for bounce, which
    reverses); camera pans are slow enough not to change it."""
    _check_choice("motion", motion, MOTIONS)
    if motion in LINEAR_MOTIONS:
        return motion
    return None if motion == "bounce" else "static"


# ---------------------------------------------------------------------------------------------
# Dataset and prompt sets
# ---------------------------------------------------------------------------------------------

# Separate random streams so that training clips, prompt sets and progressive prompt sets drawn
# from the same seed never share scenes.
_CLIP_STREAM, _PROMPT_STREAM, _PROGRESSIVE_STREAM = 0, 1, 2


def _split_code(split: str) -> int:
    _check_choice("split", split, SPLITS)
    return SPLITS.index(split)


class ToyWorld(torch.utils.data.Dataset):
    """A virtual dataset of `length` toy clips; clip `index` depends only on (seed, split, index).

    `__getitem__` returns a `ToyVideo` (frames and ground truth); `video_tensor` and `batch` give
    model inputs in [-1, 1]. Objects are planned to stay in view for min(num_frames, PLAN_FRAMES)
    frames; longer clips wrap, bounce and hold as the module docstring describes.
    """

    def __init__(
        self,
        seed: int = 0,
        num_frames: int = 16,
        height: int = 32,
        width: int = 32,
        split: str = "train",
        max_objects: int = 3,
        length: int = 10_000,
    ):
        _check_choice("split", split, SPLITS)
        if length < 1:
            raise ConfigError(f"ToyWorld length must be positive, got {length}")
        self.seed, self.split, self.max_objects, self.length = seed, split, max_objects, length
        self.num_frames, self.height, self.width = num_frames, height, width

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> SceneSpec:
        if not 0 <= index < self.length:
            raise IndexError(f"toy clip {index} is outside 0..{self.length - 1}")
        rng = np.random.default_rng([self.seed, _split_code(self.split), _CLIP_STREAM, index])
        return sample_scene(rng, self.split, self.max_objects, min(self.num_frames, PLAN_FRAMES))

    def __getitem__(self, index: int) -> ToyVideo:
        return render(self.scene(index), self.num_frames, self.height, self.width)

    def video_tensor(self, index: int) -> torch.Tensor:
        """float (3, T, H, W) in [-1, 1]."""
        return self[index].video_tensor()

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[str]]:
        """(videos (B, 3, T, H, W) in [-1, 1], captions)."""
        clips = [self[int(i)] for i in indices]
        return torch.stack([c.video_tensor() for c in clips]), [c.caption for c in clips]


@dataclass(frozen=True)
class ToyPrompt:
    id: str
    caption: str
    scene: SceneSpec


@dataclass(frozen=True)
class ToyProgressivePrompt:
    id: str
    captions: tuple[str, str]  # one standalone caption per part
    caption: str  # "<part 1>, then <what changes>"
    scene: ProgressiveScene


def _prompt_primaries(split: str, n: int, seed: int, stream: int) -> list[tuple[str, str, str]]:
    """The split's triples in a seeded order, cycled: n >= len(triples) covers every triple."""
    triples = triples_of_split(split)
    order = np.random.default_rng([seed, _split_code(split), stream]).permutation(len(triples))
    return [triples[order[i % len(triples)]] for i in range(n)]


def prompt_set(
    split: str, n: int, seed: int = 0, max_objects: int = 3, plan_frames: int = PLAN_FRAMES
) -> list[ToyPrompt]:
    """A fixed list of evaluation prompts with stable ids; prompt i does not depend on n. Primary
    triples cycle through the split's triples, so held-out prompts cover every held-out triple."""
    prompts = []
    for i, primary in enumerate(_prompt_primaries(split, n, seed, _PROMPT_STREAM)):
        rng = np.random.default_rng([seed, _split_code(split), _PROMPT_STREAM, i])
        scene = sample_scene(rng, split, max_objects, plan_frames, primary)
        text = caption(scene, np.random.default_rng([scene.seed, 1]))  # the caption `render` gives
        prompts.append(ToyPrompt(f"toy_{split}_{seed}_{i:05d}", text, scene))
    return prompts


def progressive_prompt_set(
    split: str, n: int, seed: int = 0, max_objects: int = 3, frames_per_part: int = PLAN_FRAMES
) -> list[ToyProgressivePrompt]:
    """Fixed two-part prompts with stable ids; the captions are those `render_progressive` gives."""
    code = _split_code(split)
    prompts = []
    for i in range(n):
        rng = np.random.default_rng([seed, code, _PROGRESSIVE_STREAM, i])
        scene = sample_progressive(rng, split, max_objects, frames_per_part)
        second = continue_scene(scene.first, scene.changes, frames_per_part)
        captions = (
            caption(scene.first, np.random.default_rng([scene.first.seed, 1])),
            caption(second, np.random.default_rng([second.seed, 1])),
        )
        text = progressive_caption(captions[0], scene, np.random.default_rng([scene.first.seed, 2]))
        prompts.append(ToyProgressivePrompt(f"toy_progressive_{split}_{seed}_{i:05d}", captions, text, scene))
    return prompts
