"""Regions a user's mark stands for, on the editing grid: stroke footprints and tapped regions.

A tap says "this object" or "not this". Where "not this" lands on a part of the cutout separate
from the main one (a spoon beside the bowl), the region is that whole part. Otherwise (a missed
object on the background, an unwanted piece of the main part) the region is grown from the tap:
a colour model of the tapped surface (the pixels geodesically nearest the tap) against the rest of
the tapped side gives each pixel a likeness to it; pixels clearly unlike it and whatever earlier
marks set to the other side are the seeds of what stays; each pixel goes to the nearer seed set
by geodesic distance, where a path costs little while
colour and likeness stay as they were (Bai & Sapiro's geodesic segmentation), so a region is
bounded by the photo's edges rather than by its distance from the tap. Where the segmentation
model saw the tapped spot (a lamp arm at 0.5 that the cutout lost), the region also keeps to
where the model's evidence is comparable: the sky behind, of the arm's colour, it called 0.0001.
Where the model only half-saw the spot a keep tap lands on (a plant beside the pot it picked), the
region also takes the object it half-saw, where its colours are like the tapped surface's.
"""
from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage

from pipeline.threads import ProcessThreads

# Costs of a path's step: each pixel travelled, a colour change (RGB distance in [0, 1] units,
# up to sqrt 3) and a change of likeness to the tapped surface ([0, 1]). Travel is cheap, so a
# region is bounded by changes, not by how far it reaches from the tap.
TRAVEL_WEIGHT = 0.2
COLOUR_WEIGHT = 10.0
LIKENESS_WEIGHT = 50.0
# Raster-scan sweeps (each a forward and a backward pass): paths may wind around obstacles.
SWEEPS = 3
# Seed disk of a tap, in editing-grid pixels: a finger's uncertainty on a phone is larger, but the
# click protocol's point is the centre of an error region, and a small seed stays inside thin parts.
TAP_SEED_RADIUS = 2
# Colour histograms' levels per channel (16^3 bins, smoothed over neighbours).
BINS = 16
# The tapped surface's colours: this share of the tapped part nearest the tap (at least MIN_TAP_SAMPLE px).
TAP_SAMPLE = 0.02
MIN_TAP_SAMPLE = 50
# ... and no further from it than this path cost (a colour change of 0.3, or 15 px of one colour).
SAMPLE_COST = 3.0
# Seed pixels around the tap are those within this RGB distance of the tapped pixel's colour.
SEED_COLOUR_DISTANCE = 0.12
# Pixels whose colour is this unlike the tapped surface hold their side: seeds of the competition.
STAY_LIKENESS = 0.2
# A tap's region keeps to pixels where the model's evidence for the tapped side is at least a
# tenth of what it is at the tap (DIS5K dev: keep taps on thin parts the cutout lost had model
# 0.26-0.99 there and 0.0000-0.015 over the sky they flooded).
EVIDENCE_SPAN = 10.0
# ... unless the model's evidence at the tap is itself below this: then it did not see what was
# tapped at all, and colours decide. Its faint response above it still marks the object it did not
# pick: SOD dev's first keep taps where ISNet read 0.0003-0.02 had 80-100 % of the missed object at
# a tenth of the tap's value or more and 2-30 % of the background; ISNet's background lies at
# 0.00001-0.0001 (simulated taps, 0.02 -> 0.001: NoC@90 SOD dev 10.64 -> 10.34, alphamatting.com
# SAD after 3 taps 15.92 -> 12.53, DIS5K dev as before; 0.0003 and 0.003 within .04 of it; docs/editing.md).
# The product keeps the model's mask at 16 bits for this (bot.results.mask_png).
NO_EVIDENCE = 0.001
# A keep tap where the model half-saw the spot also takes the connected pixels where the model
# responds at least this share of what it does at the tap (the same half-seen object).
HALF_SEEN_SHARE = 0.5
# Texture is no edge: the photo is smoothed (Gaussian sigma, grid pixels) before growing a region.
# At 2 px of the <= 512 px region grid a woven basket, foliage or fur is one surface, not stripes
# and specks each tap takes one of (sigma 1 -> 2: simulated taps' NoC@90 SOD dev 11.08 -> 10.70,
# DIS5K dev 5.47 -> 5.39, alphamatting.com SAD after 3 taps -46 % -> -47 %; docs/editing.md).
# Parts thinner than that are grown unsmoothed on the editing grid (edit._tap).
SMOOTHING = 2.0
# Threads for sweeping a tap's two competing distances at once.
_SWEEPERS = ProcessThreads(2, "geodesic")


# The four neighbours a forward raster pass has already visited; a backward pass visits their mirrors.
_BEFORE = ((-1, -1), (-1, 0), (-1, 1), (0, -1))


@numba.njit(cache=True, nogil=True)
def _step_costs(image: np.ndarray, weight: float) -> np.ndarray:
    """(4, h, w) float64: the cost of the step from each pixel to its neighbour _BEFORE[k] (inf
    off the picture). A step's cost does not change between sweeps, so it is paid for once."""
    height, width = image.shape[:2]
    costs = np.full((4, height, width), np.inf)
    diagonal = np.sqrt(2.0)
    for k in range(4):
        dy, dx = _BEFORE[k]
        step = diagonal if dx != 0 and dy != 0 else 1.0
        travel = step * step * weight * weight
        for y in range(max(0, -dy), height):
            for x in range(max(0, -dx), min(width, width - dx)):
                colour = 0.0
                for channel in range(image.shape[2]):
                    difference = image[y, x, channel] - image[y + dy, x + dx, channel]
                    colour += difference * difference
                costs[k, y, x] = np.sqrt(travel + colour)
    return costs


@numba.njit(cache=True, nogil=True)
def _sweep(distance: np.ndarray, costs: np.ndarray, allowed: np.ndarray) -> None:
    """One forward and one backward raster pass of shortest-path relaxation over `allowed`."""
    height, width = distance.shape
    for direction in (1, -1):
        rows = range(height) if direction == 1 else range(height - 1, -1, -1)
        for y in rows:
            cols = range(width) if direction == 1 else range(width - 1, -1, -1)
            for x in cols:
                if not allowed[y, x]:
                    continue
                best = distance[y, x]
                for k in range(4):
                    dy, dx = _BEFORE[k]
                    if direction == 1:  # the neighbour (y+dy, x+dx); the step is stored at (y, x)
                        ny, nx, cy, cx = y + dy, x + dx, y, x
                    else:  # the mirrored neighbour (y-dy, x-dx); the same step is stored there
                        ny, nx, cy, cx = y - dy, x - dx, y - dy, x - dx
                    if ny < 0 or ny >= height or nx < 0 or nx >= width or not allowed[ny, nx]:
                        continue
                    candidate = distance[ny, nx] + costs[k, cy, cx]
                    if candidate < best:
                        best = candidate
                distance[y, x] = best


def geodesic_distance(features: np.ndarray, seeds: np.ndarray, allowed: np.ndarray,
                      travel: float | None = None, sweeps: int = SWEEPS) -> np.ndarray:
    """Length of the shortest path from `seeds` to each pixel, travelling only over `allowed`.

    A step costs sqrt((travel * pixels)^2 + |feature difference|^2).

    Parameters
    ----------
    features: (h, w, k) per-pixel features, already weighted.
    seeds: (h, w) bool, distance 0.
    allowed: (h, w) bool; pixels outside stay at infinity.

    Returns
    -------
    (h, w) float32 (inf where no allowed path reaches).
    """
    distance = np.where(seeds & allowed, 0.0, np.inf).astype(np.float32)
    features = np.ascontiguousarray(features, dtype=np.float32)
    allowed = np.ascontiguousarray(allowed)
    costs = _step_costs(features, np.float32(TRAVEL_WEIGHT if travel is None else travel))
    for _ in range(sweeps):
        _sweep(distance, costs, allowed)
    return distance


def disk(shape: tuple[int, int], y: float, x: float, radius: float) -> np.ndarray:
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - y) ** 2 + (cols - x) ** 2 <= radius * radius


def stroke_footprint(shape: tuple[int, int], points: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within `radius` of the polyline through `points` ((n, 2) as x, y, in grid pixels)."""
    height, width = shape
    footprint = np.zeros(shape, dtype=bool)
    radius = max(float(radius), 0.5)
    pad = int(np.ceil(radius)) + 1
    left = max(0, int(np.floor(points[:, 0].min())) - pad)
    right = min(width, int(np.ceil(points[:, 0].max())) + pad + 1)
    top = max(0, int(np.floor(points[:, 1].min())) - pad)
    bottom = min(height, int(np.ceil(points[:, 1].max())) + pad + 1)
    if left >= right or top >= bottom:
        return footprint
    # The polyline sampled every half pixel, then every pixel within the radius of a sample.
    samples = [points[:1]]
    for start, end in zip(points[:-1], points[1:]):
        steps = max(1, int(np.ceil(np.hypot(*(end - start)) * 2)))
        samples.append(start + (end - start) * (np.arange(1, steps + 1)[:, None] / steps))
    path = np.concatenate(samples)
    line = np.zeros((bottom - top, right - left), dtype=bool)
    ys = np.clip(np.round(path[:, 1]).astype(int) - top, 0, bottom - top - 1)
    xs = np.clip(np.round(path[:, 0]).astype(int) - left, 0, right - left - 1)
    line[ys, xs] = True
    footprint[top:bottom, left:right] = ndimage.distance_transform_edt(~line) <= radius
    return footprint


def component_at(region: np.ndarray, y: int, x: int) -> np.ndarray:
    """The 8-connected part of `region` holding (y, x) (empty if (y, x) is outside `region`)."""
    if not region[y, x]:
        return np.zeros(region.shape, dtype=bool)
    labels, _ = ndimage.label(region, structure=np.ones((3, 3)))
    return labels == labels[y, x]


def largest_component(region: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(region, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros(region.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def tap_region(image: np.ndarray, state: np.ndarray, y: int, x: int, keep: bool,
               held: np.ndarray | None = None, smoothing: float | None = None,
               model: np.ndarray | None = None, second: np.ndarray | None = None,
               raised: np.ndarray | None = None) -> np.ndarray:
    """The pixels a tap at (y, x) selects (keep) or drops (not keep), given the current subject `state`.

    Parameters
    ----------
    image: (h, w, 3) RGB in [0, 1] on the editing grid.
    state: (h, w) bool, the cutout's subject as it stands before this tap.
    held: (h, w) bool, pixels earlier marks set to the other side (earlier taps' points, strokes):
        the region never takes them, and they compete against the tap.
    smoothing: Gaussian sigma (grid pixels) applied to the photo first (None: SMOOTHING).
    model: (h, w) the segmentation model's soft mask: bounds the region where it saw the tapped spot.
    second: (h, w) a second model's soft mask, given for keep taps the first model did not see:
        where it has the tapped spot above 0.5, the region is its object there.
    raised: (h, w) bool, the shipped subject's pixels the first model did not call subject (what the
        automatic cutout's second opinions added: U^2-Net-p where ISNet was undecided, the person
        matte's hair): the second model's object is connected through them and through the background.

    Returns
    -------
    (h, w) bool: the region whose side the tap sets. A tap that agrees with the state there
    (keep on subject, erase on background) returns the part it lands on, which then holds.
    """
    on_subject = bool(state[y, x])
    side = state if on_subject else ~state
    part = component_at(side, y, x)
    if on_subject == keep:
        return part
    held_anywhere = np.zeros(state.shape, dtype=bool) if held is None else held
    held = held_anywhere & part
    if on_subject and not held.any() and not (part & largest_component(state)).any():
        return part  # a separate object beside the main one: drop it whole
    if second is not None and keep and second[y, x] >= 0.5:
        # The first model missed what was tapped and a second one saw it: its object, whole. Connected
        # through the pieces of it the automatic cutout holds (raised there because the second model was
        # sure: they split the background into pockets, and the tapped pocket alone was a fifth of GT27's
        # yarn), not through what the first model drew (to U^2-Net-p two birds and the rock behind them
        # are one blob: SOD 103070) nor through earlier taps' regions (SOD 42049: a branch beyond the bird).
        passable = part if raised is None else ~state | raised
        its_object = component_at((second >= 0.5) & passable, y, x) & ~state
        return (its_object | disk(state.shape, y, x, TAP_SEED_RADIUS) & part) & ~held_anywhere
    half_seen = np.zeros(state.shape, dtype=bool)
    if model is not None:
        part = _within_models_evidence(part, model, y, x, keep)
        half_seen = _half_seen_object(part, model, y, x, keep)
    smoothing = SMOOTHING if smoothing is None else smoothing
    image = ndimage.gaussian_filter(image, sigma=(smoothing, smoothing, 0)) if smoothing else image
    # The seed: the tapped pixel and those around it of its colour (a tap on a ski pole is not
    # a tap on the sky beside it).
    like_tapped = np.linalg.norm(image - image[y, x], axis=-1) <= SEED_COLOUR_DISTANCE
    seed = disk(state.shape, y, x, TAP_SEED_RADIUS) & part & ~held & like_tapped
    seed[y, x] = not held[y, x]
    if not seed.any():
        return seed
    colour = image * COLOUR_WEIGHT
    from_tap = geodesic_distance(colour, seed, part)
    likeness = tap_likeness(image, part, from_tap)
    # The picture's border is not a seed of what stays: uniform surfaces would then split halfway
    # between the tap and the frame, and scenery or an object the frame cuts is subject up to it
    # (docs/editing.md, session 23).
    others = part & ((likeness < STAY_LIKENESS) | held)
    others &= ~seed
    if not others.any():
        return part & ~held  # a hole enclosed by the subject (keep), or nothing unlike the tap to hold on to
    # Bai & Sapiro's geodesic segmentation: paths are cheap while the colour stays as like the
    # tapped surface as where they started, whatever their length.
    features = np.concatenate([colour, likeness[..., None] * LIKENESS_WEIGHT], axis=-1)
    # The two competing distances are independent: swept side by side (numba leaves the GIL).
    from_others_later = _SWEEPERS.get().submit(geodesic_distance, features, others, part)
    from_tap = geodesic_distance(features, seed, part)
    from_others = from_others_later.result()
    grown = part & (from_tap < from_others)
    # The half-seen object counts where its colours are like the tapped surface's.
    return (component_at(grown | (half_seen & ~others), y, x) | seed) & ~held


def evidence_at(model: np.ndarray, y: int, x: int, keep: bool) -> float:
    """The model's evidence for the tapped side at a tap: its mask (keep) or one minus it (erase),
    the best of the 3x3 pixels around the tap (a finger is not a pixel)."""
    window = model[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
    return float(window.max() if keep else 1.0 - window.min())


def _half_seen_object(part: np.ndarray, model: np.ndarray, y: int, x: int, keep: bool) -> np.ndarray:
    """For a keep tap where the model half-saw something (between NO_EVIDENCE and 0.5 at the tap):
    the connected pixels where it responds at least half as strongly as at the tap, the object it
    half-saw (GT13's plant beside the pot it picked). Empty otherwise."""
    at_tap = evidence_at(model, y, x, keep)
    if not keep or not NO_EVIDENCE <= at_tap < 0.5:
        return np.zeros(part.shape, dtype=bool)
    return component_at(part & (model >= HALF_SEEN_SHARE * at_tap), y, x)


def _within_models_evidence(part: np.ndarray, model: np.ndarray, y: int, x: int, keep: bool) -> np.ndarray:
    """The tapped part, less the pixels where the model is far surer of the other side than at the tap.

    A keep tap on a lamp arm the cutout lost lands where the model said 0.5; the sky around it,
    the same grey-blue, the model put at 0.0001. Colours cannot bound that region; the model's own
    response can. How far to trust the model is read at the tap: where it saw nothing (an object it
    did not pick), nothing is excluded and colours alone decide.
    """
    at_tap = evidence_at(model, y, x, keep)
    if at_tap < NO_EVIDENCE:
        return part  # the model was sure of the other side here: it has nothing to bound with
    evidence = model if keep else 1.0 - model
    trusted = evidence >= at_tap / EVIDENCE_SPAN
    trusted[y, x] = True
    return component_at(part & trusted, y, x)


def colour_bins(image: np.ndarray) -> np.ndarray:
    """Each pixel's bin in a BINS^3 RGB histogram."""
    levels = np.minimum((image * BINS).astype(np.int32), BINS - 1)
    return (levels[..., 0] * BINS + levels[..., 1]) * BINS + levels[..., 2]


def tap_likeness(image: np.ndarray, part: np.ndarray, from_tap: np.ndarray) -> np.ndarray:
    """How much each pixel's colour is like the tapped surface's rather than the rest of its part: [0, 1].

    The tapped surface: the part's pixels geodesically nearest the tap (TAP_SAMPLE of the part, at
    least MIN_TAP_SAMPLE pixels). Colours are compared by smoothed RGB histograms.
    """
    bins = colour_bins(image)
    inside = from_tap[part]
    count = min(inside.size, max(MIN_TAP_SAMPLE, int(TAP_SAMPLE * inside.size)))
    reach = min(float(np.partition(inside, count - 1)[count - 1]), SAMPLE_COST)
    near = part & (from_tap <= reach)
    far = part & ~near
    def histogram(selection: np.ndarray) -> np.ndarray:
        counts = np.bincount(bins[selection], minlength=BINS ** 3).astype(np.float32).reshape((BINS,) * 3)
        counts = ndimage.uniform_filter(counts, size=3, mode="constant")
        return counts / max(float(counts.sum()), 1.0)
    tapped, rest = histogram(near), histogram(far)
    likeness = (tapped / np.maximum(tapped + rest, 1e-12)).ravel()[bins]
    likeness[near] = np.maximum(likeness[near], 0.5)
    return likeness.astype(np.float32)
