"""The editing engine (pipeline.editing.edit): taps, strokes, soft hair beside a stroke, replay, memory."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

import pipeline.editing.edit as edit_module
from pipeline.editing.edit import EditSource, MarkError, Stroke, Tap, marks_from_json, prepare, refine_alpha

HEIGHT, WIDTH = 240, 360
BACKGROUND = np.array([0.55, 0.65, 0.8], dtype=np.float32)
RED = np.array([0.85, 0.15, 0.1], dtype=np.float32)
GREEN = np.array([0.1, 0.6, 0.2], dtype=np.float32)


def disk(shape, cy, cx, radius):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2


def scene(scale: int = 1):
    """A red bowl (big disk) and a green spoon (a bar apart from it) on a blue-grey backdrop."""
    shape = (HEIGHT * scale, WIDTH * scale)
    bowl = disk(shape, 120 * scale, 130 * scale, 70 * scale)
    spoon = np.zeros(shape, dtype=bool)
    spoon[60 * scale:180 * scale, 270 * scale:300 * scale] = True
    image = np.empty((*shape, 3), dtype=np.float32)
    image[...] = BACKGROUND
    image[bowl] = RED
    image[spoon] = GREEN
    # A little texture so nothing is perfectly flat.
    image += np.random.default_rng(0).normal(0, 0.01, image.shape).astype(np.float32)
    return np.clip(image, 0, 1), bowl, spoon


def test_erase_tap_on_a_separate_object_removes_exactly_it():
    image, bowl, spoon = scene()
    alpha = (bowl | spoon).astype(np.float32)
    source = EditSource(image, alpha, alpha)
    edited = refine_alpha(source, [Tap(285, 120, keep=False)])
    assert edited[spoon].max() == 0.0
    assert np.array_equal(edited[bowl], alpha[bowl])
    assert edited[~(bowl | spoon)].max() == 0.0


def test_keep_tap_on_a_missed_object_adds_that_object_only():
    image, bowl, spoon = scene()
    alpha = bowl.astype(np.float32)  # the model kept the bowl and missed the spoon
    source = EditSource(image, alpha, alpha)
    edited = refine_alpha(source, [Tap(285, 120, keep=True)])
    assert (edited[spoon] > 0.5).mean() > 0.97
    assert np.array_equal(edited[bowl], alpha[bowl])
    far_from_spoon = ~disk(alpha.shape, 120, 285, 80) & ~bowl
    assert edited[far_from_spoon].max() == 0.0


def test_a_tap_goes_where_the_model_half_saw_not_over_a_backdrop_of_the_same_colour():
    """A pale handle the colour of the wall behind it: the model saw it faintly (0.4), the shipped
    cutout dropped it. Colours cannot bound a keep tap there; the model's evidence does."""
    image, bowl, _ = scene()
    handle = np.zeros(bowl.shape, dtype=bool)
    handle[110:130, 195:330] = True
    image[handle] = BACKGROUND + 0.01  # all but indistinguishable from the backdrop
    model = bowl.astype(np.float32)
    model[handle & ~bowl] = 0.4
    alpha = bowl.astype(np.float32)
    edited = refine_alpha(EditSource(image, model, alpha), [Tap(300, 120, keep=True)])
    assert (edited[handle & ~bowl] > 0.5).mean() > 0.95
    backdrop = ~bowl & ~disk(bowl.shape, 120, 300, 40) & ~handle
    backdrop[100:140, :] = False  # the matted band along the handle's edges may be soft
    assert edited[backdrop].max() == 0.0


def test_a_keep_tap_keeps_to_what_the_model_faintly_saw_when_it_did_not_pick_it():
    """The same handle, where the model did not pick it at all: 0.004 over it, 0.00002 over the
    backdrop (ISNet's faint response over an object it missed stands out of its background by
    orders of magnitude). No second opinion: the faint response alone bounds the tap."""
    image, bowl, _ = scene()
    handle = np.zeros(bowl.shape, dtype=bool)
    handle[110:130, 195:330] = True
    image[handle] = BACKGROUND + 0.01
    model = np.where(bowl, 1.0, 0.00002).astype(np.float32)
    model[handle & ~bowl] = 0.004
    alpha = bowl.astype(np.float32)
    edited = refine_alpha(EditSource(image, model, alpha), [Tap(300, 120, keep=True)])
    assert (edited[handle & ~bowl] > 0.5).mean() > 0.95
    backdrop = ~bowl & ~disk(bowl.shape, 120, 300, 40) & ~handle
    backdrop[100:140, :] = False
    assert edited[backdrop].max() == 0.0


def test_a_tapped_point_ends_on_the_tapped_side_even_in_an_edges_matted_band():
    """After a keep tap adds the spoon, the matted band along its edge leaves pixels above 0.5 that
    the engine's region left out. An erase tap on one must clear it (it used to agree with the
    engine's own idea of the subject there and change nothing, however often it was repeated)."""
    image, bowl, spoon = scene()
    alpha = bowl.astype(np.float32)
    grid = prepare(EditSource(image, alpha, alpha))
    first = [Tap(285, 120, keep=True)]
    added = refine_alpha(grid, first)
    _, replay = grid.remembered(tuple(first))
    halo = np.argwhere((added > 0.5) & ~replay.state)
    assert len(halo), "the band put no pixel outside the region above 0.5: nothing to test"
    y, x = halo[len(halo) // 2]
    erased = refine_alpha(grid, first + [Tap(float(x), float(y), keep=False)])
    assert erased[y, x] < 0.5
    assert (erased[spoon] > 0.5).mean() > 0.95  # the spoon stays


def test_a_keep_tap_the_first_model_did_not_see_takes_the_second_models_object():
    """The spoon is the backdrop's colour and the first model never saw it (0 there): a second
    model that did see it gives its object, asked once, and only for such keep taps."""
    image, bowl, spoon = scene()
    image[spoon] = BACKGROUND + 0.01
    first_model = bowl.astype(np.float32)
    asked = []

    def second_opinion():
        asked.append(1)
        mask = (bowl | spoon).astype(np.float32)
        return mask[::2, ::2]  # any size: the engine brings it to its grids

    source = EditSource(image, first_model, first_model, second_opinion=second_opinion)
    grid = prepare(source)
    assert refine_alpha(grid, [Tap(150, 120, keep=False)]) is not None and not asked  # erase: not asked
    edited = refine_alpha(grid, [Tap(285, 120, keep=True)])
    assert (edited[spoon] > 0.5).mean() > 0.95
    assert edited[~spoon & ~bowl & ~disk(bowl.shape, 120, 285, 75)].max() == 0.0
    refine_alpha(grid, [Tap(285, 120, keep=True), Tap(285, 70, keep=True)])
    assert len(asked) == 1
    # Without a second opinion the same tap cannot tell the spoon from the backdrop around it.
    alone = refine_alpha(EditSource(image, first_model, first_model), [Tap(285, 120, keep=True)])
    assert (alone[~spoon & ~bowl] > 0.5).sum() > spoon.sum()  # it floods the backdrop


def test_the_second_models_object_is_taken_whole_across_the_pockets_the_cutout_splits_it_into():
    """The cutout holds a frame of an object (strands of a yarn the pipeline's second opinion raised,
    the first model at 0.3 there) and nothing else; the frame encloses a pocket of background. A keep
    tap in the pocket takes the second model's whole object, outside the frame too (GT27's yarn). Where
    the first model itself was sure of the frame, the frame is another thing's edge: the tap takes
    its pocket only (two birds and the rock behind them are one blob to U^2-Net-p)."""
    shape = (HEIGHT, WIDTH)
    image = np.empty((*shape, 3), dtype=np.float32)
    image[...] = BACKGROUND
    image += np.random.default_rng(1).normal(0, 0.01, image.shape).astype(np.float32)
    thing = np.zeros(shape, dtype=bool)
    thing[40:200, 60:300] = True
    frame = np.zeros(shape, dtype=bool)
    frame[80:160, 120:240] = True
    frame[88:152, 128:232] = False
    image[frame] = RED
    image = np.clip(image, 0, 1)
    cutout = frame.astype(np.float32)
    outside_the_frame = thing & ~ndimage.binary_dilation(frame, iterations=6) & (np.arange(WIDTH) < 110)[None, :]
    for first_model_on_the_frame, takes_the_whole_object in ((0.3, True), (1.0, False)):
        source = EditSource(image, cutout * first_model_on_the_frame, cutout,
                            second_opinion=lambda: thing.astype(np.float32))
        edited = refine_alpha(source, [Tap(180, 120, keep=True)])
        assert (edited[88:152, 128:232] > 0.5).mean() > 0.95  # the tapped pocket, either way
        if takes_the_whole_object:
            assert (edited[outside_the_frame] > 0.5).mean() > 0.95
            assert edited[~ndimage.binary_dilation(thing, iterations=8)].max() == 0.0
        else:
            assert edited[outside_the_frame].max() == 0.0


def test_the_second_opinion_is_asked_ahead_while_the_photo_is_prepared(monkeypatch):
    """Marks with a keep tap the first model did not see start the second opinion in the background
    (it overlaps the resizing and the earlier marks); the answer is the one asked in place."""
    import threading

    image, bowl, spoon = scene()
    image[spoon] = BACKGROUND + 0.01
    first_model = bowl.astype(np.float32)
    asked_on = []

    def second_opinion():
        asked_on.append(threading.current_thread().name)
        return (bowl | spoon).astype(np.float32)

    source = EditSource(image, first_model, first_model, second_opinion=second_opinion)
    marks = [Tap(150, 120, keep=False), Tap(285, 120, keep=True)]
    ahead = refine_alpha(source, marks)
    assert len(asked_on) == 1 and asked_on[0].startswith("second-opinion")
    refine_alpha(source, marks[:1])  # an erase tap alone never asks
    assert len(asked_on) == 1
    opened = prepare(source)  # the editor page: asked on opening, before any mark
    opened.ask_second_ahead()
    assert np.array_equal(refine_alpha(opened, marks), ahead) and len(asked_on) == 2
    assert asked_on[1].startswith("second-opinion")
    monkeypatch.setattr(edit_module, "_ask_ahead", lambda *args: None)  # asked in place, when the tap wants it
    assert np.array_equal(refine_alpha(source, marks), ahead)
    assert asked_on[2] == threading.current_thread().name


def test_a_failing_second_opinion_leaves_the_tap_to_the_first_model():
    image, bowl, spoon = scene()
    alpha = bowl.astype(np.float32)

    def broken():
        raise RuntimeError("model file missing")

    edited = refine_alpha(EditSource(image, alpha, alpha, second_opinion=broken), [Tap(285, 120, keep=True)])
    plain = refine_alpha(EditSource(image, alpha, alpha), [Tap(285, 120, keep=True)])
    assert np.array_equal(edited, plain)


def test_keep_tap_selects_a_region_of_the_working_grid_at_full_size():
    """The upsampling path: a 4x larger photo edited on a smaller mask grid."""
    image, bowl, spoon = scene(scale=4)
    alpha = bowl.astype(np.float32)
    small_mask = alpha[::4, ::4]
    edited = refine_alpha(EditSource(image, small_mask, alpha), [Tap(285 * 4, 120 * 4, keep=True)])
    inner_spoon = spoon.copy()
    inner_spoon[:, :] = False
    inner_spoon[64 * 4:176 * 4, 274 * 4:296 * 4] = True
    assert (edited[inner_spoon] > 0.5).mean() > 0.99
    assert np.array_equal(edited[bowl & ~disk(alpha.shape, 120 * 4, 285 * 4, 130 * 4)],
                          alpha[bowl & ~disk(alpha.shape, 120 * 4, 285 * 4, 130 * 4)])


def test_erase_stroke_clears_its_footprint_and_leaves_far_pixels_alone():
    image, bowl, spoon = scene()
    alpha = (bowl | spoon).astype(np.float32)
    stroke = Stroke(((100.0, 60.0), (160.0, 180.0)), radius=8.0, keep=False)
    edited = refine_alpha(EditSource(image, alpha, alpha), [stroke])
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    # Distance from each pixel to the stroke's segment.
    start, end = np.array([100.0, 60.0]), np.array([160.0, 180.0])
    direction = end - start
    t = np.clip(((cols - start[0]) * direction[0] + (rows - start[1]) * direction[1]) / direction.dot(direction), 0, 1)
    distance = np.hypot(cols - (start[0] + t * direction[0]), rows - (start[1] + t * direction[1]))
    assert edited[distance <= 7].max() == 0.0
    far = distance > 30
    assert np.array_equal(edited[far], alpha[far])
    assert edited[spoon].min() == 1.0


def hair_scene():
    """A subject whose right side is a soft fringe: alpha falls 1 -> 0 over 40 px, colour = alpha mix."""
    cols = np.arange(WIDTH, dtype=np.float32)
    ramp = np.clip((200 - cols) / 40, 0, 1)  # opaque left of x = 160, clear right of x = 200
    rows = np.arange(HEIGHT, dtype=np.float32)[:, None]
    # Strands: the coverage varies along y too, as hair does.
    alpha = np.clip(ramp[None, :] * (0.75 + 0.25 * np.sin(rows / 3.0)) + (ramp[None, :] >= 1) * 1.0, 0, 1)
    alpha = np.broadcast_to(alpha, (HEIGHT, WIDTH)).astype(np.float32).copy()
    foreground = np.array([0.35, 0.2, 0.1], dtype=np.float32)
    image = alpha[..., None] * foreground + (1 - alpha[..., None]) * BACKGROUND
    return image.astype(np.float32), alpha


def test_keep_stroke_next_to_hair_keeps_the_hair_soft():
    image, alpha = hair_scene()
    soft_before = (alpha > 0.05) & (alpha < 0.95)
    stroke = Stroke(((150.0, 40.0), (150.0, 200.0)), radius=6.0, keep=True)
    edited = refine_alpha(EditSource(image, alpha, alpha), [stroke])
    assert edited[40:200, 144:157].min() == 1.0
    near = np.zeros_like(soft_before)
    near[40:200, 157:185] = True
    region = near & soft_before
    values = edited[region]
    assert ((values > 0.0) & (values < 1.0)).mean() > 0.9
    # Not pushed to opaque either: the fringe keeps its density.
    assert abs(float(values.mean()) - float(alpha[region].mean())) < 0.1


def test_a_tap_that_agrees_with_the_cutout_leaves_its_soft_fringe_alone():
    """"This one" on the subject, "not this" on the backdrop: nothing changes side, so the hair's
    fringe keeps every value (such a tap used to set its whole part to the tapped side: a keep tap
    on a face made the hair around it opaque, an erase tap on the sky cleared the strands)."""
    image, alpha = hair_scene()
    fringe = (alpha > 0.02) & (alpha < 0.98)
    for tap in (Tap(60.0, 120.0, keep=True), Tap(320.0, 120.0, keep=False)):
        edited = refine_alpha(EditSource(image, alpha, alpha), [tap])
        assert np.abs(edited[fringe] - alpha[fringe]).max() < 0.02, tap
        assert edited[int(tap.y), int(tap.x)] == (1.0 if tap.keep else 0.0)


def test_a_tap_at_a_thin_missed_margin_fixes_the_margin_not_the_backdrop_of_its_colour():
    """The cutout stops 3 px short of a red bowl standing against a red wall: a keep tap in the missed
    margin, 1.5 px outside the outline, takes a band along the outline; grown by colour alone it took
    the wall (3,760 px here)."""
    image, bowl, _ = scene()
    wall = np.zeros(bowl.shape, dtype=bool)
    wall[:, :100] = True
    image[wall] = RED + np.random.default_rng(1).normal(0, 0.01, (int(wall.sum()), 3)).astype(np.float32)
    cutout = disk(bowl.shape, 120, 130, 67).astype(np.float32)
    edited = refine_alpha(EditSource(image, cutout, cutout), [Tap(130.0 - 68.5, 120.0, keep=True)])
    assert edited[120, 61] > 0.5  # the tapped margin
    outside = ndimage.distance_transform_edt(cutout < 0.5)
    assert edited[outside > 8].max() < 0.5  # the wall stays out
    assert (edited[wall & (outside <= 4)] > 0.5).sum() > 50  # a band along the outline came in


def test_an_erase_on_what_a_keep_tap_leaked_into_takes_back_only_that_tap_s_change():
    """A red bowl on a rug of its very colour; the cutout missed the bowl's lower right and the model
    is unsure of the rest (0.6), so neither colours nor the model bound a keep tap there: it takes the
    rug too. An erase on the rug then takes back part of what that keep tap changed, and never the
    bowl the cutout had: grown over the whole subject it took a third of the bowl."""
    image, bowl, _ = scene()
    rows, cols = np.indices(bowl.shape)
    rug = rows >= 150
    image[rug & ~bowl] = RED + np.random.default_rng(1).normal(0, 0.01, (int((rug & ~bowl).sum()), 3))
    shown = bowl & ~((rows > 120) & (cols > 150))
    model = np.where(shown, 0.6, 1e-5).astype(np.float32)
    source = EditSource(image, model, shown.astype(np.float32))
    keep = Tap(170, 140, keep=True)
    leaked = refine_alpha(source, [keep])
    assert (leaked[rug & ~bowl] > 0.5).mean() > 0.9  # the keep tap leaked into the rug
    edited = refine_alpha(source, [keep, Tap(60, 165, keep=False)])
    assert (edited[shown] > 0.5).mean() > 0.99  # the bowl the cutout had stays whole
    assert edited[bowl & ~shown].min() > 0.5  # and so does what the keep tap rightly added
    assert edited[rug & (cols < 60)].max() < 0.5  # the rug near the erase went
    # A keep tap on what that erase took back takes back a share of it, not the whole rug again.
    again = refine_alpha(source, [keep, Tap(60, 165, keep=False), Tap(100, 220, keep=True)])
    assert again[219:222, 99:102].min() > 0.5
    assert again[disk(bowl.shape, 165, 60, 12) & rug].max() < 0.5


def test_marks_are_replayable_and_a_session_gives_the_same_alpha():
    image, bowl, spoon = scene()
    alpha = (bowl | spoon).astype(np.float32)
    source = EditSource(image, alpha, alpha)
    marks = [Tap(285, 120, keep=False), Stroke(((130.0, 50.0), (130.0, 190.0)), 5.0, keep=False),
             Tap(285, 120, keep=True)]
    first = refine_alpha(source, marks)
    assert np.array_equal(first, refine_alpha(source, marks))
    session = prepare(source)
    for count in range(1, len(marks) + 1):  # the page sends the growing list, one mark at a time
        stepwise = refine_alpha(session, marks[:count])
    assert np.array_equal(stepwise, first)
    # Undo: the shorter list gives what it gave before.
    assert np.array_equal(refine_alpha(session, marks[:1]), refine_alpha(source, marks[:1]))
    assert np.array_equal(refine_alpha(session, []), alpha)


def test_marks_from_json_checks_shape_and_bounds():
    marks = marks_from_json([{"type": "tap", "x": 3, "y": 4, "mode": "erase"},
                             {"type": "stroke", "points": [[1, 2], [5, 6]], "radius": 3, "mode": "keep"}], 10, 10)
    assert marks == [Tap(3.0, 4.0, False), Stroke(((1.0, 2.0), (5.0, 6.0)), 3.0, True)]
    for bad in ([{"type": "tap", "x": 30, "y": 4, "mode": "erase"}], [{"type": "tap", "x": 3, "y": 4}],
                [{"type": "stroke", "points": [], "radius": 3, "mode": "keep"}], {"type": "tap"},
                [{"type": "tap", "x": "3", "y": 4, "mode": "keep"}]):
        with pytest.raises(MarkError):
            marks_from_json(bad, 10, 10)


def test_a_12_megapixel_edit_allocates_no_full_size_copy_per_mark():
    height, width = 3000, 4000
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[...] = (BACKGROUND * 255).astype(np.uint8)
    bowl = disk((height, width), 1500, 1500, 900)
    image[bowl] = (RED * 255).astype(np.uint8)
    alpha = (bowl * 255).astype(np.uint8)
    mask = alpha[::4, ::4].astype(np.float32) / 255  # a 1000 x 750 working grid
    source = EditSource(image, mask, alpha)
    full_float32 = height * width * 4

    def peak(marks):
        tracemalloc.start()
        result = refine_alpha(source, marks)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert result.shape == (height, width) and result.dtype == np.float32
        return top

    few = peak([Tap(3500, 500, keep=False)])
    many = peak([Tap(3500, 500 + 40 * k, keep=k % 2 == 0) for k in range(8)]
                + [Stroke(((1500.0 + 30 * k, 600.0), (1500.0 + 30 * k, 700.0)), 20.0, keep=False) for k in range(8)])
    # The answer itself is one full-size float32 array; the work around it is bounded (a few
    # row bands), whatever the number of marks: a full-size float64 copy per mark would be
    # 2 * full_float32 each, 32 of them here.
    print(f"peak traced: 1 mark {few / 1e6:.0f} MB, 16 marks {many / 1e6:.0f} MB")
    assert few < 3.5 * full_float32
    assert many < 3.5 * full_float32



def test_a_keep_tap_takes_the_textured_object_the_model_half_saw_where_its_colours_match():
    """GT13's plant beside the pot ISNet picked: leaves of many greens that ISNet drew at ~0.3.
    Colour growth from a tap stops at the leaves' edges; the object the model half-saw, where its
    colours are like the tapped surface's, comes whole. A haze of the same response over the
    backdrop (another colour) is not taken."""
    from pipeline.editing.regions import tap_region

    rng = np.random.default_rng(5)
    image = np.empty((HEIGHT, WIDTH, 3), dtype=np.float32)
    image[...] = BACKGROUND
    pot = disk((HEIGHT, WIDTH), 170, 100, 50)
    plant = np.zeros((HEIGHT, WIDTH), dtype=bool)
    plant[20:130, 150:300] = True
    # Leaves: 3x3 blocks of greens, dark to pale, each its own shade (texture the colour growth trips over).
    blocks = rng.uniform(0.0, 1.0, (HEIGHT // 3 + 1, WIDTH // 3 + 1))
    shade = np.kron(blocks, np.ones((3, 3)))[:HEIGHT, :WIDTH, None]
    leaves = (1 - shade) * np.array([0.05, 0.25, 0.05]) + shade * np.array([0.6, 0.85, 0.3])
    image[plant] = leaves[plant]
    image[pot] = RED
    haze = np.zeros((HEIGHT, WIDTH), dtype=bool)
    haze[130:200, 200:300] = True  # backdrop below the plant, drawn as faintly as the plant
    state = pot.copy()
    model = np.where(pot, 1.0, np.where(plant | haze, 0.3, 0.0)).astype(np.float32)
    unseen = np.where(pot, 1.0, 0.0).astype(np.float32)  # the model saw nothing there: colours decide

    region = tap_region(image, state, 75, 225, True, model=model)
    by_colour = tap_region(image, state, 75, 225, True, model=unseen)
    # The plant's outermost 2 px are blurred with the backdrop by the region's smoothing: the
    # matting band around the new edge settles them (refine_alpha), the region need not.
    inside = ndimage.binary_erosion(plant, iterations=3)
    assert (region & inside).sum() > 0.99 * inside.sum()  # measured 0.999
    # The half-seen object adds leaves colours alone hold back (measured 0.945 vs 0.935 of the plant).
    assert (region & plant).sum() > (by_colour & plant).sum() + 0.005 * plant.sum()
    assert not (region & ~plant).any()  # the backdrop's haze included


def reference_geodesic(features, seeds, allowed, travel, sweeps):
    """The textbook raster-scan geodesic distance: each step's cost computed where it is taken."""
    height, width = allowed.shape
    distance = np.where(seeds & allowed, 0.0, np.inf).astype(np.float32)
    for _ in range(sweeps):
        for direction in (1, -1):
            for y in (range(height) if direction == 1 else range(height - 1, -1, -1)):
                for x in (range(width) if direction == 1 else range(width - 1, -1, -1)):
                    if not allowed[y, x]:
                        continue
                    best = float(distance[y, x])
                    for dy, dx in ((-direction, -1), (-direction, 0), (-direction, 1), (0, -direction)):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < height and 0 <= nx < width and allowed[ny, nx]:
                            step = np.sqrt(2.0) if dx and dy else 1.0
                            colour = float(np.sum((features[y, x] - features[ny, nx]).astype(np.float64) ** 2))
                            best = min(best, float(distance[ny, nx]) + np.sqrt(step * step * travel * travel + colour))
                    distance[y, x] = best
    return distance


def test_geodesic_distance_equals_the_textbook_sweep_with_each_step_paid_once():
    from pipeline.editing.regions import geodesic_distance

    rng = np.random.default_rng(3)
    features = (rng.random((23, 31, 4)) * 3).astype(np.float32)
    allowed = rng.random((23, 31)) < 0.85
    seeds = np.zeros((23, 31), dtype=bool)
    seeds[5, 7] = seeds[20, 25] = allowed[5, 7] = allowed[20, 25] = True
    allowed[:4, :4], allowed[4, :5], allowed[:5, 4] = True, False, False  # a pocket no path enters
    travel = float(np.float32(0.2))
    got = geodesic_distance(features, seeds, allowed, travel=travel, sweeps=2)
    expected = reference_geodesic(features, seeds, allowed, travel, sweeps=2)
    reached = np.isfinite(got)
    assert reached.sum() > 0.5 * got.size and (allowed & ~reached).any()  # paths wind round walls; some are shut in
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isinf(got[~allowed]).all()
