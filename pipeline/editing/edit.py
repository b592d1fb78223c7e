"""The editing engine: a stored cutout plus the user's marks -> a new full-resolution alpha.

Marks are taps ("this object" / "not this") and keep / erase strokes, in the photo's pixel
coordinates. The function is pure: the client keeps the list of marks (undo drops the last one,
redo puts it back) and sends the whole list; the same list always gives the same alpha.

How (the cost does not grow with the number of marks: every mark is a region on one grid, then
one solve and one upsample):
1. On the editing grid (the model's working grid, ~1024 px long side: pipeline.cutout's), the
   marks are replayed in order over the cutout's subject (its alpha cut at 0.5). A stroke's
   footprint is hard subject / background. A tap selects or drops a region (pipeline.editing.regions:
   a separate part of the cutout whole, else a region grown from the tap over the photo).
   A tap on what an earlier tap of the other kind changed takes back part of that change only
   (`_take_back`). A later mark wins where marks overlap.
2. Pixels within a few grid pixels of an edge the marks created or moved are reopened and
   matted (closed-form, pipeline.editing.scribble_matte): the strokes and everything not reopened are
   known values, soft hair included, so hair beside a keep stroke stays soft.
3. Only the grid pixels that changed go back to full size, with the pipeline's colour guided
   upsample along the photo's own edges (pipeline.upsample); every other full-size pixel keeps
   the stored alpha exactly.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Union

import numpy as np
from scipy import ndimage

from pipeline.edges import sharpen, split_soft_regions
from pipeline.editing.regions import (COLOUR_WEIGHT, SMOOTHING, TAP_SEED_RADIUS, component_at, disk,
                                      evidence_at, geodesic_distance, stroke_footprint, tap_region)
from pipeline.editing.scribble_matte import solve_reopened
from pipeline.segment import resize_float
from pipeline.threads import ProcessThreads
from pipeline.upsample import GUIDE_EPS, GUIDE_RADIUS, active_columns, guided_coefficients, in_bands, resize_rows

log = logging.getLogger(__name__)
# Asks the second model ahead of the taps that will want it (EditGrid.ask_second_ahead).
_AHEAD = ProcessThreads(2, "second-opinion")

# Grid pixels on each side of an edited edge that the matting solve reopens.
BAND = 3
# Alpha strictly between these is soft (hair, fur): reopened near an edit, never flattened.
SOFT_LOW, SOFT_HIGH = 0.02, 0.98
# Taps grow their regions on the grid brought to at most this long side (cost per tap ~0.1 s).
REGION_SIDE = 512
# A tapped pixel whose colour on the region grid is this far (RGB distance) from its colour on the
# editing grid lies on a structure too thin for the region grid.
THIN_COLOUR_DISTANCE = 0.1
# A tap that changes side this close to the outline (editing-grid px) fixes the sliver along it: its
# region reaches at most NEAR_OUTLINE_REACH times the tap's distance from the outline (`_near_outline`;
# simulated taps: SOD dev's first 60 photos NoC@90 9.35 -> 9.07, DIS5K dev and alphamatting.com as
# before or better; 2 px gave 9.30 before the agreeing-tap fix, 5 px 9.08 with one DIS5K photo a tap worse).
NEAR_OUTLINE = 3.0
NEAR_OUTLINE_REACH = 2.0
# A keep tap where the first model saw nothing or next to nothing (its mask below this) asks
# the second model (EditSource.second_opinion) and takes its object there. Asked wherever the
# first model was below 0.5, it helped SOD dev's missed objects (first keep taps U^2-Net-p saw:
# IoU .723 -> .787) but on DIS5K's fine structures its 320 px blob swallowed the background
# between a pipe's bends (IoU .84 -> .25) where ISNet had seen the pipe faintly (0.055); where the
# first model saw the spot, its own evidence bounds the tap instead (and below this too, where the
# second model is not sure of the spot and the first one's faint response is above regions.NO_EVIDENCE).
SECOND_OPINION_BELOW = 0.02
# Replays an editing grid remembers (each ~6 bytes per grid pixel: ~5 MB at 1024 x 768).
REMEMBERED_REPLAYS = 12
# Half-side (grid pixels) of the square around a tap's point that later taps cannot flip back.
TAP_HOLD = 1
# Most marks one call accepts (a client sends its whole undo history; more is not a person).
MAX_MARKS = 500
# Most points one stroke may carry.
MAX_STROKE_POINTS = 4000


@dataclass(frozen=True)
class Tap:
    """A touch: keep=True "this object" (select the region), keep=False "not this" (drop it)."""

    x: float
    y: float
    keep: bool


@dataclass(frozen=True)
class Stroke:
    """A brush stroke through `points` ((x, y) photo pixels) with `radius` photo pixels."""

    points: tuple[tuple[float, float], ...]
    radius: float
    keep: bool


Mark = Union[Tap, Stroke]


class MarkError(ValueError):
    """A mark list that cannot be applied (wrong shape, outside the photo, too many)."""


def marks_from_json(items: Any, width: int, height: int) -> list[Mark]:
    """Marks from their JSON form, checked against the photo's size.

    [{"type": "tap", "x": 10, "y": 20, "mode": "keep" | "erase"},
     {"type": "stroke", "points": [[x, y], ...], "radius": 12, "mode": "keep" | "erase"}]
    """
    if not isinstance(items, list):
        raise MarkError("marks must be a list")
    if len(items) > MAX_MARKS:
        raise MarkError(f"at most {MAX_MARKS} marks")
    marks: list[Mark] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise MarkError(f"mark {index} is not an object")
        mode = item.get("mode")
        if mode not in ("keep", "erase"):
            raise MarkError(f"mark {index}: mode must be 'keep' or 'erase'")
        kind = item.get("type")
        if kind == "tap":
            x, y = _number(item.get("x"), index), _number(item.get("y"), index)
            if not (0 <= x < width and 0 <= y < height):
                raise MarkError(f"mark {index}: tap outside the {width}x{height} photo")
            marks.append(Tap(x, y, mode == "keep"))
        elif kind == "stroke":
            points = item.get("points")
            if not isinstance(points, list) or not 1 <= len(points) <= MAX_STROKE_POINTS:
                raise MarkError(f"mark {index}: a stroke needs 1 to {MAX_STROKE_POINTS} points")
            pairs = []
            for point in points:
                if not isinstance(point, (list, tuple)) or len(point) != 2:
                    raise MarkError(f"mark {index}: points are [x, y] pairs")
                pairs.append((_number(point[0], index), _number(point[1], index)))
            radius = _number(item.get("radius"), index)
            if not 0 < radius <= max(width, height):
                raise MarkError(f"mark {index}: radius must be positive and within the photo")
            marks.append(Stroke(tuple(pairs), radius, mode == "keep"))
        else:
            raise MarkError(f"mark {index}: type must be 'tap' or 'stroke'")
    return marks


def _number(value: Any, index: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise MarkError(f"mark {index}: coordinates and radius are numbers")
    return float(value)


@dataclass
class EditSource:
    """A stored cutout, as the engine needs it.

    image: (H, W, 3) the photo, uint8 or float in [0, 1].
    mask: (h, w) the segmentation model's soft mask on its working grid (any size up to the photo's).
    alpha: (H, W) the current alpha, uint8 or float in [0, 1].
    second_opinion: returns a second salient-object model's soft mask for the photo (any size),
        asked at most once per grid, and only when a keep tap lands where the first model saw
        nothing; None (or an exception from it) means no second opinion.
    """

    image: np.ndarray
    mask: np.ndarray
    alpha: np.ndarray
    second_opinion: Callable[[], np.ndarray] | None = None


@dataclass
class Replay:
    """Where replaying a list of marks on the grid stands: the subject and what the marks fixed."""

    state: np.ndarray  # (h, w) bool: the subject after the marks
    hard: np.ndarray  # (h, w) int8: +1 / -1 where a stroke's footprint holds subject / background
    flipped: np.ndarray  # (h, w) bool: pixels whose side a mark set (or pinned)
    edited: np.ndarray  # (h, w) bool: pixels whose side a mark changed
    points: np.ndarray  # (h, w) int8: +1 / -1 where a keep / erase tap touched (later taps hold them)
    owner: np.ndarray  # (h, w) int16: which of `taps` last changed the pixel's side (-1: none)
    taps: list[tuple[int, int]] = field(default_factory=list)  # each tap's (y, x) on the grid, in order

    @classmethod
    def start(cls, alpha: np.ndarray) -> "Replay":
        shape = alpha.shape
        return cls(alpha > 0.5, np.zeros(shape, dtype=np.int8), np.zeros(shape, dtype=bool),
                   np.zeros(shape, dtype=bool), np.zeros(shape, dtype=np.int8), np.full(shape, -1, dtype=np.int16))

    def copy(self) -> "Replay":
        return Replay(self.state.copy(), self.hard.copy(), self.flipped.copy(), self.edited.copy(),
                      self.points.copy(), self.owner.copy(), list(self.taps))


@dataclass
class EditGrid:
    """The source brought to the editing grid once; an editing session may keep it between calls.

    It also remembers where the last few mark lists left the grid, so a call that adds one mark
    to (or undoes one from) a list already seen replays only what is new. That memo never
    changes an answer: the same marks give the same alpha with or without it.
    """

    source: EditSource
    image: np.ndarray  # (h, w, 3) float32 photo on the grid
    alpha: np.ndarray  # (h, w) float32 current alpha on the grid
    _replays: "OrderedDict[tuple[Mark, ...], Replay]" = field(default_factory=OrderedDict, repr=False)
    _region_image: np.ndarray | None = field(default=None, repr=False)
    _masks_on: dict[tuple[str, tuple[int, int]], np.ndarray] = field(default_factory=dict, repr=False)
    _second: np.ndarray | None = field(default=None, repr=False)
    _second_asked: bool = field(default=False, repr=False)
    _second_coming: Future | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.alpha.shape

    @property
    def full_shape(self) -> tuple[int, int]:
        return self.source.alpha.shape[:2]

    def region_image(self) -> np.ndarray:
        """The photo on the grid taps grow regions on (at most REGION_SIDE long)."""
        if self._region_image is None:
            height, width = self.shape
            scale = min(1.0, REGION_SIDE / max(height, width))
            if scale >= 1.0:
                self._region_image = self.image
            else:
                size = max(1, round(width * scale)), max(1, round(height * scale))
                self._region_image = np.clip(resize_float(self.image, *size), 0.0, 1.0)
        return self._region_image

    def model_on(self, shape: tuple[int, int]) -> np.ndarray:
        """The model's soft mask brought to `shape` (the editing or the region grid)."""
        return self._fitted("model", self.source.mask, shape)

    def raised_on(self, shape: tuple[int, int]) -> np.ndarray:
        """The first alpha's subject where the first model did not call it subject (what the automatic
        cutout's second opinions added), on `shape`: where the second model's object may be connected."""
        return (self._fitted("alpha", self.alpha, shape) >= 0.5) & (self.model_on(shape) < 0.5)

    def second_on(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The second model's soft mask brought to `shape`, or None without one (asked once)."""
        if not self._second_asked:
            self._second_asked = True
            if self.source.second_opinion is not None:
                try:
                    answer = self._second_coming.result() if self._second_coming else self.source.second_opinion()
                    self._second = np.asarray(answer, dtype=np.float32)
                except Exception as error:  # noqa: BLE001 - a tap without it is still a tap
                    log.warning("second opinion unavailable, taps use the first model only: %s", error)
        return None if self._second is None else self._fitted("second", self._second, shape)

    def ask_second_ahead(self, marks: Iterable[Mark] | None = None) -> None:
        """Start asking the second model in the background when a tap among `marks` (about to be
        replayed) will want it (_wants_second), so that its ~0.3 s overlaps the replay's other work;
        `marks` None: whatever they will be (the editor page, when it opens). The answer is the one
        second_on would have asked for."""
        if not self._second_asked and self._second_coming is None:
            model = None if marks is None else self.model_on(self.shape)
            self._second_coming = _ask_ahead(self.source, model, marks)

    def _fitted(self, name: str, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A soft mask resized to `shape` and clipped to [0, 1], kept per (name, shape)."""
        key = (name, shape)
        if key not in self._masks_on:
            self._masks_on[key] = fitted_mask(mask, shape)
        return self._masks_on[key]

    def remembered(self, marks: tuple[Mark, ...]) -> tuple[int, Replay | None]:
        """The longest prefix of `marks` replayed before, and its replay (a copy)."""
        for length in range(len(marks), 0, -1):
            replay = self._replays.get(marks[:length])
            if replay is not None:
                self._replays.move_to_end(marks[:length])
                return length, replay.copy()
        return 0, None

    def remember(self, marks: tuple[Mark, ...], replay: Replay) -> None:
        self._replays[marks] = replay.copy()
        while len(self._replays) > REMEMBERED_REPLAYS:
            self._replays.popitem(last=False)


def _unit_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return np.clip(array.astype(np.float32, copy=False), 0.0, 1.0)


def editing_size(full_shape: tuple[int, int], mask_shape: tuple[int, int]) -> tuple[int, int]:
    """The grid edits are solved on: the mask's, or the photo's when that is smaller (as the pipeline)."""
    from pipeline.cutout import Pipeline

    return Pipeline.working_size(full_shape, mask_shape)


def prepare(source: EditSource, marks: Iterable[Mark] = ()) -> EditGrid:
    """Bring the photo and the current alpha to the editing grid. If a tap among `marks` will want
    the second opinion, it is asked first, in the background, while the photo is resized."""
    height, width = source.alpha.shape[:2]
    if source.image.shape[:2] != (height, width):
        raise ValueError(f"photo {source.image.shape[:2]} and alpha {(height, width)} differ in size")
    grid_h, grid_w = editing_size((height, width), source.mask.shape)
    marks, coming, fitted = list(marks), None, {}
    if marks and source.second_opinion is not None:
        # The model's mask on the grid, made here to decide, is the grid's own (EditGrid.model_on).
        fitted[("model", (grid_h, grid_w))] = model = fitted_mask(source.mask, (grid_h, grid_w))
        coming = _ask_ahead(source, model, marks)
    if (grid_h, grid_w) == (height, width):
        image, alpha = _unit_float(source.image), _unit_float(source.alpha)
    else:  # 8-bit photos and alphas (as stored) are resized by PIL as they are: no full-size float copy.
        image = _resized(source.image, grid_w, grid_h).astype(np.float32)
        alpha = _resized(source.alpha, grid_w, grid_h).astype(np.float32)
    return EditGrid(source, image, alpha, _masks_on=fitted, _second_coming=coming)


def fitted_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A soft mask as float32 at `shape`, clipped to [0, 1]."""
    mask = mask.astype(np.float32, copy=False)
    if mask.shape != shape:
        mask = resize_float(mask, shape[1], shape[0])
    return np.clip(mask, 0.0, 1.0)


def _resized(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """An 8-bit or [0, 1] float image (h, w) or (h, w, 3) resized to (height, width), float32 in [0, 1]."""
    from PIL import Image

    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0
    return np.clip(resize_float(array.astype(np.float32, copy=False), width, height), 0.0, 1.0)


def refine_alpha(source: EditSource | EditGrid, marks: Iterable[Mark]) -> np.ndarray:
    """The cutout's alpha with `marks` applied, at the photo's full size ((H, W) float32 in [0, 1])."""
    marks = list(marks)
    grid = source if isinstance(source, EditGrid) else prepare(source, marks)
    small = edit_on_grid(grid, marks)
    return to_full_size(grid, small)


def edit_on_grid(grid: EditGrid, marks: list[Mark]) -> np.ndarray:
    """The edited alpha on the editing grid."""
    marks_key = tuple(marks)
    done, replay = grid.remembered(marks_key)
    if replay is None:
        replay = Replay.start(grid.alpha)
    grid.ask_second_ahead(marks[done:])
    for mark in marks[done:]:
        _replay_mark(grid, replay, mark)
    if marks_key:
        grid.remember(marks_key, replay)
    # The tapped points hold their side in the alpha as a stroke's footprint does: without that, the
    # matting band around an earlier edit could leave a tapped pixel on the other side, and the tap
    # (which agrees with the state there) would change nothing however often it is repeated.
    held = np.where(replay.hard != 0, replay.hard, replay.points)
    if not replay.edited.any() and not (held != 0).any():
        return grid.alpha.copy()
    return _solve_edges(grid, grid.alpha, replay.state, held, replay.flipped, replay.edited)


def _replay_mark(grid: EditGrid, replay: Replay, mark: Mark) -> None:
    shape = grid.shape
    full_h, full_w = grid.full_shape
    scale_x, scale_y = shape[1] / full_w, shape[0] / full_h
    if isinstance(mark, Stroke):
        points = np.array(mark.points, dtype=np.float64) * (scale_x, scale_y)
        region = stroke_footprint(shape, points, mark.radius * 0.5 * (scale_x + scale_y))
        replay.hard[region] = 1 if mark.keep else -1
        replay.owner[region] = -1  # a stroke's footprint is exact: a later tap there is a tap of its own
    else:
        # What earlier marks set to the other side holds against this tap.
        opposite = -1 if mark.keep else 1
        held = (replay.hard == opposite) | (replay.points == opposite)
        y, x = _on_grid(mark, (full_h, full_w), shape)
        # Only what changes side is the tap's region: a tap that agrees with the state where it lands
        # (keep on the subject, erase on the background) holds its point and rewrites nothing else.
        earlier = int(replay.owner[y, x]) if replay.state[y, x] != mark.keep else -1
        if earlier >= 0:
            region = _take_back(grid, replay, earlier, y, x)
        else:
            region = _tap(grid, replay.state, mark, held)
        region = _near_outline(region, replay.state, y, x, mark.keep)
        region &= (replay.state != mark.keep) & ~held
        replay.owner[region] = len(replay.taps)
        replay.taps.append((y, x))
        replay.hard[region] = 0  # a later tap frees pixels an earlier stroke held
        replay.points[_held_square(y, x)] = -opposite
    replay.edited |= region & (replay.state != mark.keep)
    replay.flipped |= region  # the band is solved with these at the side the mark set
    replay.state[region] = mark.keep


def _take_back(grid: EditGrid, replay: Replay, earlier: int, y: int, x: int) -> np.ndarray:
    """A tap on what an earlier tap of the other kind changed (an erase on the grass that a keep tap
    took with the bird) takes back part of that change and never more: the pixels of its connected
    piece geodesically nearer this tap than the earlier tap's point, by the photo's colours. The
    earlier tap was right near its point and the new one is right near its own, so where the two
    surfaces look alike (the grass has the bird's colours) the change is split between them, instead
    of the new tap's region spreading over the subject the earlier tap started from (grown from the
    tap over the whole subject, it did: simulated taps, docs/editing.md session 24). A piece no
    longer joined to the earlier tap's point goes whole."""
    changed = (replay.owner == earlier) & (replay.state == replay.state[y, x])
    piece = component_at(changed, y, x)
    earlier_point = np.zeros_like(piece)
    earlier_point[_held_square(*replay.taps[earlier])] = True
    earlier_point &= piece
    if not earlier_point.any():
        return piece
    rows, cols = np.flatnonzero(piece.any(axis=1)), np.flatnonzero(piece.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    inside = piece[box]
    colour = ndimage.gaussian_filter(grid.image[box], sigma=(SMOOTHING, SMOOTHING, 0)) * COLOUR_WEIGHT
    this_seed = disk(inside.shape, y - rows[0], x - cols[0], TAP_SEED_RADIUS) & inside
    nearer_this = (geodesic_distance(colour, this_seed, inside)
                   < geodesic_distance(colour, earlier_point[box], inside))
    region = np.zeros_like(piece)
    region[box] = inside & nearer_this
    return region


def _held_square(y: int, x: int) -> tuple[slice, slice]:
    """The square of grid pixels around a tap's point that later taps cannot flip back."""
    return slice(max(0, y - TAP_HOLD), y + TAP_HOLD + 1), slice(max(0, x - TAP_HOLD), x + TAP_HOLD + 1)


def _on_grid(tap: Tap, full_shape: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    """The tap's (y, x) on a grid of `shape` over a photo of `full_shape`."""
    (full_h, full_w), (height, width) = full_shape, shape
    return min(height - 1, int(tap.y * height / full_h)), min(width - 1, int(tap.x * width / full_w))


def _wants_second(model: np.ndarray, full_shape: tuple[int, int], tap: Tap) -> bool:
    """A keep tap where the first model (its mask on the editing grid) saw nothing asks the second one."""
    return tap.keep and evidence_at(model, *_on_grid(tap, full_shape, model.shape), True) < SECOND_OPINION_BELOW


def _ask_ahead(source: EditSource, model: np.ndarray | None, marks: Iterable[Mark] | None) -> Future | None:
    """The second opinion asked in the background if a tap among `marks` will want it, by the first
    model's mask on the editing grid (`marks` None: whatever they will be)."""
    if source.second_opinion is None:
        return None
    if marks is not None and not any(isinstance(mark, Tap) and _wants_second(model, source.alpha.shape[:2], mark)
                                     for mark in marks):
        return None
    return _AHEAD.get().submit(source.second_opinion)


def _tap(grid: EditGrid, state: np.ndarray, tap: Tap, held: np.ndarray) -> np.ndarray:
    """The region a tap sets, grown on the region grid and brought back to the editing grid.

    A tap on something thinner than the region grid shows (a lamp post, a cable) is grown on the
    editing grid itself: on the coarse grid its pixel is the sky's colour, and a region grown
    from there is the sky.
    """
    image = grid.region_image()
    small_h, small_w = image.shape[:2]
    y, x = _on_grid(tap, grid.full_shape, (small_h, small_w))
    grid_y, grid_x = _on_grid(tap, grid.full_shape, state.shape)
    wants_second = _wants_second(grid.model_on(state.shape), grid.full_shape, tap)

    def models_on(shape: tuple[int, int]) -> dict[str, np.ndarray | None]:
        return {"model": grid.model_on(shape), "second": grid.second_on(shape) if wants_second else None,
                "raised": grid.raised_on(shape) if wants_second else None}

    if (small_h, small_w) == state.shape:
        return tap_region(image, state, y, x, tap.keep, held, **models_on(state.shape))
    if np.linalg.norm(image[y, x] - grid.image[grid_y, grid_x]) > THIN_COLOUR_DISTANCE:
        return tap_region(grid.image, state, grid_y, grid_x, tap.keep, held, smoothing=0.0,
                          **models_on(state.shape))
    small_held = resize_float(held.astype(np.float32), small_w, small_h) > 0.0
    small_state = resize_float(state.astype(np.float32), small_w, small_h) > 0.5
    small_state[y, x] = state[grid_y, grid_x]  # the tap's side is the editing grid's
    small_region = tap_region(image, small_state, y, x, tap.keep, small_held, **models_on((small_h, small_w)))
    region = resize_float(small_region.astype(np.float32), state.shape[1], state.shape[0]) > 0.5
    # Only pixels on the tapped side change side; the matting band settles the edge.
    return region & (state == state[grid_y, grid_x]) & ~held


def _near_outline(region: np.ndarray, state: np.ndarray, y: int, x: int, keep: bool) -> np.ndarray:
    """A tap that changes side within NEAR_OUTLINE grid px of the outline is taken as a fix of the
    sliver along it: its region keeps to the pixels at most NEAR_OUTLINE_REACH times the tap's own
    distance (+1 px) from the outline. The region grown by colour from such a tap could otherwise take
    a whole surface of that colour (GT15, SOD 144067: a keep tap at a thin missed margin that filled
    the background beside it)."""
    side = bool(state[y, x])
    if side == keep or not region.any():
        return region
    # The tap's distance from the outline, read in the window that can hold it (no whole-grid transform
    # for the many taps far from the outline).
    near = int(np.ceil(NEAR_OUTLINE))
    top, left = max(0, y - near), max(0, x - near)
    others = np.argwhere(state[top:y + near + 1, left:x + near + 1] != side)
    if not len(others):
        return region
    at_tap = float(np.hypot(others[:, 0] + top - y, others[:, 1] + left - x).min())
    if at_tap > NEAR_OUTLINE:
        return region
    # Distances from the outline up to the reach are exact in the region's box padded by the reach.
    reach = NEAR_OUTLINE_REACH * at_tap + 1
    pad = int(np.ceil(reach)) + 1
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    box = (slice(max(0, rows[0] - pad), rows[-1] + pad + 1), slice(max(0, cols[0] - pad), cols[-1] + pad + 1))
    limited = np.zeros_like(region)
    limited[box] = region[box] & (ndimage.distance_transform_edt(state[box] == side) <= reach)
    return limited


def _solve_edges(grid: EditGrid, base: np.ndarray, state: np.ndarray, hard: np.ndarray,
                 flipped: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """Matte a band around the edges the marks made; everything else keeps its value."""
    structure = np.ones((3, 3), dtype=bool)
    strokes = hard != 0
    # The edges that moved: the borders of changed regions and of stroke footprints.
    changed = edited | strokes
    moved = changed ^ ndimage.binary_erosion(changed, structure, border_value=0)
    moved |= ndimage.binary_dilation(changed, structure) & ~changed
    near = ndimage.binary_dilation(moved, structure, iterations=BAND)
    soft = (base > SOFT_LOW) & (base < SOFT_HIGH)
    # Soft pixels touching a reopened band are reopened with it (hair beside a stroke).
    reach = ndimage.binary_dilation(near, structure, iterations=2 * BAND)
    unknown = (near | (soft & reach)) & ~strokes
    # Known: the stroke's value, the side a mark set, else the cutout's own value.
    known = np.where(flipped, state.astype(np.float32), base)
    known = np.where(hard > 0, 1.0, np.where(hard < 0, 0.0, known)).astype(np.float32)
    # Prior: the marks' side where they set it; the cutout's value elsewhere; nothing where no
    # subject is near any more (the fringe of a dropped object).
    prior = known.copy()
    no_subject_near = ~ndimage.binary_dilation(state, structure, iterations=BAND)
    prior[no_subject_near] = 0.0
    solved = solve_reopened(grid.image, known, unknown, prior)
    # Outside every reopened pixel and mark, the cutout is untouched.
    return np.where(unknown | flipped | strokes, solved, base).astype(np.float32)


def to_full_size(grid: EditGrid, small: np.ndarray) -> np.ndarray:
    """The stored alpha with the grid pixels that changed brought to full size along the photo's edges."""
    source = grid.source
    full = source.alpha.astype(np.float32)  # the answer: the one full-size array this call makes
    if source.alpha.dtype == np.uint8:
        full /= 255.0
    np.clip(full, 0.0, 1.0, out=full)
    changed = np.abs(small - grid.alpha) > 1e-3
    if not changed.any():
        return full
    crisp = split_soft_regions(small).transition & changed
    height, width = full.shape
    if small.shape == (height, width):
        full[changed] = small[changed]
        full[crisp] = sharpen(full[crisp])
        return full
    margin = 2 * GUIDE_RADIUS + 3
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    top, bottom = max(0, rows[0] - margin), min(small.shape[0], rows[-1] + margin + 1)
    left, right = max(0, cols[0] - margin), min(small.shape[1], cols[-1] + margin + 1)
    # Guided-filter coefficients only over the changed box, in grid-sized arrays so that
    # resize_rows keeps the whole-image alignment of pipeline.upsample.
    coeff_a = np.zeros((*small.shape, 3), dtype=np.float32)
    coeff_b = np.zeros(small.shape, dtype=np.float32)
    box = (slice(top, bottom), slice(left, right))
    coeff_a[box], coeff_b[box] = guided_coefficients(grid.image[box], small[box], GUIDE_RADIUS, GUIDE_EPS)
    weight = ndimage.binary_dilation(changed, iterations=1).astype(np.float32)
    crisp_weight = ndimage.binary_dilation(crisp, iterations=1).astype(np.float32)
    scale_y, scale_x = height / small.shape[0], width / small.shape[1]
    full_top, full_bottom = int((top + margin // 2) * scale_y), min(height, int(np.ceil((bottom - margin // 2) * scale_y)))
    full_left, full_right = int((left + margin // 2) * scale_x), min(width, int(np.ceil((right - margin // 2) * scale_x)))
    active = weight > 0

    def one_band(band_top: int, band_bottom: int) -> None:
        y0, y1 = full_top + band_top, full_top + band_bottom
        # Only the columns this band's edits reach (marks scattered over a photo leave most untouched).
        columns = active_columns(active, width, height, y0, y1)
        if columns is None:
            return
        x0, x1 = max(full_left, columns[0]), min(full_right, columns[1])
        if x0 >= x1:
            return
        photo = source.image[y0:y1, x0:x1]
        photo = photo.astype(np.float32) / 255.0 if photo.dtype == np.uint8 else photo.astype(np.float32, copy=False)
        guided = resize_rows(coeff_b, width, height, y0, y1, x0, x1).copy()
        for channel in range(3):
            guided += resize_rows(coeff_a[..., channel], width, height, y0, y1, x0, x1) * photo[..., channel]
        np.clip(guided, 0.0, 1.0, out=guided)
        steep = np.clip(resize_rows(crisp_weight, width, height, y0, y1, x0, x1), 0.0, 1.0)
        guided += steep * (sharpen(guided) - guided)
        blend = np.clip(resize_rows(weight, width, height, y0, y1, x0, x1), 0.0, 1.0)
        current = full[y0:y1, x0:x1]
        current += blend * (guided - current)

    in_bands(full_bottom - full_top, one_band)
    return full
