"""The second opinion (pipeline.second_opinion) asked ahead, on the pipeline thread, for a whole batch.

Asked from the refine threads, U²-Net-p ran eagerly there (a CUDA graph cannot be captured beside
their work): ~1,000 interpreted operators a photo, each giving the GIL away under load, 0.15-0.36 s
a photo on an H100 where it takes 18 ms alone (docs/performance.md, session 20). The photo that
asked it was then its batch's slowest, and with batches overlapping the slowest photo sets the pace.

The question needs only the mask after segmentation (the finer view mixed in) and whether the
person matte was heard, both known on the pipeline thread. So the pipeline thread reads every
photo's undecided share in one transfer, runs U²-Net-p once per network shape for the photos that
ask (a replayed graph there, captured at warm-up or at a quiet moment), and hands each refinement
its answer at the working grid. The refinement only decides what to take from it, as before.
Off with CUTOUT_SECOND_OPINION_AHEAD=0 (pipeline.cutout.default_second_opinion_ahead).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch

from pipeline.second_opinion import MIN_RAISED_SHARE
from pipeline.torch_path import refine as on_device
from pipeline.torch_path.chain import at_working_grid, working_stacks
from pipeline.torch_path.segment import DevicePhotos, Row

if TYPE_CHECKING:
    from pipeline.cutout import Pipeline
    from pipeline.torch_path.segment import SizeGroup

log = logging.getLogger(__name__)


class Asked:
    """What the pipeline thread found for one photo: whether it asked the second opinion, and the
    answer (a Row of the (n, h, w) stack at the photo's working grid) where it did."""

    __slots__ = ("answer", "seconds")

    def __init__(self, answer: Row | None, seconds: float = 0.0) -> None:
        self.answer, self.seconds = answer, seconds


NOT_ASKED = Asked(None)


def ask_ahead(pipeline: Pipeline, groups: list[SizeGroup], persons: list, small_images: list) -> list[Asked]:
    """Each photo's second opinion, asked where ISNet is undecided over at least MIN_RAISED_SHARE of
    the picture deep inside what it drew and the person matte was not heard (as the refinement's
    _decide would ask it). groups: the segmenter's size groups, masks after the finer view; persons,
    small_images: per photo, Rows or None (Pipeline._person_opinions_on_device). -> an Asked per photo.
    A handful of torch calls per size group and one host read for the batch, none per photo."""
    count = sum(len(group.indices) for group in groups)
    segmenter = pipeline.second_opinion_segmenter()
    if segmenter is None:
        return [NOT_ASKED] * count
    started = time.perf_counter()
    views = []  # each group's (photos, masks after the finer view) at its working grid
    for group in groups:
        made = small_images[group.indices[0]]  # the person matte's copy of the photos there, if it ran
        if made is None:
            views.append(working_stacks(pipeline, group))
        else:
            work = pipeline.working_size(group.photos.shape[2:], tuple(group.masks.shape[1:]))
            views.append(at_working_grid(group.photos, group.masks, work, made.stack))
    shares = torch.cat([on_device.undecided(small_masks).float().mean(dim=(-2, -1))
                        for _, small_masks in views]).tolist()  # one read for the batch
    order = [(place, row, index) for place, group in enumerate(groups) for row, index in enumerate(group.indices)]
    asking: dict[int, list[tuple[int, int]]] = {}  # group place -> [(row, photo index)]
    for (place, row, index), share in zip(order, shares):
        if share >= MIN_RAISED_SHARE and persons[index] is None:
            asking.setdefault(place, []).append((row, index))
    if not asking:
        return [NOT_ASKED] * count
    # One DevicePhotos stack per working grid, numbered 0.. in asking order: the second model runs
    # once per network shape.
    stacks, numbered = [], 0
    for place, asked in asking.items():
        stacks.append((list(range(numbered, numbered + len(asked))), views[place][0][[row for row, _ in asked]]))
        numbered += len(asked)
    try:
        second_groups, _ = segmenter.first_view_groups(DevicePhotos(stacks))
    except Exception:  # an opinion the cutout can do without: the batch goes on (as with the model unavailable)
        log.exception("second opinion failed for %d photo(s); ISNet's undecided regions kept as drawn", numbered)
        return [NOT_ASKED] * count
    answers: list[Asked] = [NOT_ASKED] * count
    seconds = (time.perf_counter() - started) / numbered
    for (place, asked), second_group in zip(asking.items(), second_groups):
        work = tuple(views[place][1].shape[-2:])
        answer = on_device.resize(second_group.masks, *work).clamp(0, 1)
        for row, (_, index) in enumerate(asked):
            answers[index] = Asked(Row(answer, row), seconds)
    return answers
