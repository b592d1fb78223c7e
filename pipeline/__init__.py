"""The cutout pipeline: decode -> segment -> trimap -> matte -> foreground -> compose.

`pipeline.cutout(image, options) -> CutoutResult` is the library entry point.
"""
from pipeline.cutout import CutoutOptions, CutoutResult, Pipeline, cutout

__all__ = ["CutoutOptions", "CutoutResult", "Pipeline", "cutout"]
