"""A person-matting network's second opinion on the segmentation mask, where it sees the same subject.

ISNet finds the subject; across hair it draws a washed-out grey (GT04's green hair: mean alpha
well below the truth's). Robust Video Matting (RVM) was trained to matte people, hair strand by
strand, and on a photo of a person (or a doll with hair) it answers the subject ISNet found; on a
bottle or a bicycle it answers nothing like it. So it is asked on every photo and listened to only
where its subject (cut at 0.5) overlaps ISNet's by IoU >= PERSON_AGREEMENT, the rule the finer view
follows (pipeline.segment). Where it is listened to:
- each pixel moves from ISNet's value towards RVM's in proportion to ISNet's own doubt
  (pipeline.segment.mix_views): confident pixels stay, grey hair takes RVM's coverage;
- RVM may not clear what ISNet half-saw and RVM sees nothing of (a box beside a swimmer, a bag in
  a lap: not a person, still part of the subject). Where RVM says ~0 below ISNet's value, ISNet's
  value stands; RVM's partial coverage (strands) may still thin ISNet's grey.
Measured on every development set in docs/quality.md. RVM is GPL-3.0 (README's model table);
CUTOUT_PERSON_MATTE=off switches it off.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from pipeline.edges import CONFIDENT_LOW
from pipeline.segment import mix_views, subject_agreement

PERSON_MODEL = "rvm"
# Subjects (cut at 0.5) overlapping by at least this IoU are the same subject (as VIEW_AGREEMENT).
PERSON_AGREEMENT = 0.8
# RVM's coarse branch reads the photo at about this long side (its authors: 256-512 px).
COARSE_SIDE = 512


def default_person_matte() -> bool:
    return os.environ.get("CUTOUT_PERSON_MATTE", "on").lower() not in ("0", "off", "false", "no")


class PersonMatter:
    """RVM (MobileNetV3, ONNX) on one still photo: one pass from empty recurrent state."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.enable_cpu_mem_arena = False  # as the segmenter: peak RSS over arena speed
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def matte(self, image: np.ndarray) -> np.ndarray:
        """(h, w) alpha in [0, 1] for an (h, w, 3) float photo in [0, 1], at the photo's size."""
        source = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        ratio = np.array([min(1.0, COARSE_SIDE / max(image.shape[:2]))], dtype=np.float32)
        empty = np.zeros((1, 1, 1, 1), dtype=np.float32)
        feeds = {"src": source, "r1i": empty, "r2i": empty, "r3i": empty, "r4i": empty, "downsample_ratio": ratio}
        with self._lock:  # one session, several refine threads
            alpha = self.session.run(["pha"], feeds)[0]
        return np.clip(alpha[0, 0], 0.0, 1.0)


def blend_person_matte(mask, person):
    """ISNet's mask moved towards the person matte where ISNet doubts; never cleared where RVM sees nothing.

    NumPy arrays or torch tensors alike (the torch path blends on the device).
    """
    keeps_mask = (person < mask) & (person < CONFIDENT_LOW)
    target = person + (mask - person) * keeps_mask
    return mix_views(mask, target)


def person_matte_if_agreeing(matter: PersonMatter, image: np.ndarray, mask: np.ndarray,
                             notes: list[str]) -> np.ndarray | None:
    """The person matte of `image` if its subject is `mask`'s (both at the working grid), else None."""
    person = matter.matte(image)
    return listened(person, person_agreement(mask, person), notes)


def person_agreement(mask: np.ndarray, person: np.ndarray) -> float:
    """IoU of the mask's and the person matte's subjects (cut at 0.5); 0 where neither has one.

    Unlike two views of one network (1 there), two empty subjects give the person matte no hair or
    edges to speak for, and hearing it would keep the second opinion away from a photo ISNet drew
    wholly in grey (SOD dev 176039, 188091).
    """
    return subject_agreement(mask, person, neither=0.0)


def listened(person, agreement: float, notes: list[str]):
    """`person` if its subject agrees with the mask's (IoU `agreement` >= PERSON_AGREEMENT), the notes
    told so; else None. NumPy arrays or torch tensors alike (the torch path decides on the device's
    agreements)."""
    if agreement < PERSON_AGREEMENT:
        return None
    notes.append(f"hair and edges from the person matte (subjects agree, IoU {agreement:.2f})")
    return person
