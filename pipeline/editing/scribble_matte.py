"""Closed-form matting (Levin et al.) with known pixels of any value: the editing engine's solve.

pipeline.matting.closed_form solves a trimap (known pixels are 0 or 1). An edit needs more: the
pixels it does not reopen keep the cutout's own values, soft hair included, and they bound the
solve; the user's strokes are hard 0 / 1; every reopened pixel is pulled weakly towards a prior
(what the edit suggests there), harder where the prior is confident. The system itself is
pipeline.matting.system's, as for the pipeline's matting.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from scipy import ndimage

from pipeline.matting.closed_form import snap_values
from pipeline.matting.system import unknown_system

# The colour-line model's regulariser, as in pipeline.matting.closed_form (sharp edges follow colour).
EPSILON = 1e-7
# Pull towards the prior for a confident prior value (a prior of 0.5 pulls ten times less).
PRIOR_WEIGHT = 1e-2
# Solver residue within this of 0 / 1 is no translucency (as pipeline.matting.closed_form's SNAP,
# smaller: the reopened band is next to hair the user chose to keep).
SNAP = 0.02
MAX_ITERATIONS = 400


def solve_reopened(image: np.ndarray, known: np.ndarray, unknown: np.ndarray, prior: np.ndarray,
                   prior_weight: float = PRIOR_WEIGHT) -> np.ndarray:
    """Alpha on the `unknown` pixels, given every other pixel's value.

    Parameters
    ----------
    image: (h, w, 3) RGB in [0, 1].
    known: (h, w) alpha in [0, 1] for the pixels that are not reopened (values under `unknown` unused).
    unknown: (h, w) bool, the reopened pixels.
    prior: (h, w) in [0, 1], what each reopened pixel is pulled towards.

    Returns
    -------
    (h, w) float32: `known` with the reopened pixels solved.
    """
    alpha = known.astype(np.float32, copy=True)
    # Reopened pieces more than 4 px apart share no matting window: each is solved in its own
    # box, so scattered edits cost their own size, not that of the box around all of them.
    pieces, count = ndimage.label(ndimage.binary_dilation(unknown, iterations=2), structure=np.ones((3, 3)))
    for index, piece in enumerate(ndimage.find_objects(pieces), start=1):
        reopened = np.zeros(unknown.shape, dtype=bool)
        reopened[piece] = (pieces[piece] == index) & unknown[piece]
        _solve_piece(image, alpha, reopened, prior, prior_weight)
    return alpha


def _solve_piece(image: np.ndarray, alpha: np.ndarray, unknown: np.ndarray, prior: np.ndarray,
                 prior_weight: float) -> None:
    if not unknown.any():
        return
    rows = np.flatnonzero(unknown.any(axis=1))
    cols = np.flatnonzero(unknown.any(axis=0))
    # 3x3 windows reach 2 px: pixels further from every reopened pixel play no part.
    top, bottom = max(0, rows[0] - 2), min(alpha.shape[0], rows[-1] + 3)
    left, right = max(0, cols[0] - 2), min(alpha.shape[1], cols[-1] + 3)
    box = (slice(top, bottom), slice(left, right))
    is_unknown = unknown[box]
    laplacian_uu, pull = unknown_system(image[box], is_unknown, alpha[box], epsilon=EPSILON)
    prior_u = prior[box][is_unknown].astype(np.float64)
    weight = prior_weight * (0.9 * (2.0 * prior_u - 1.0) ** 2 + 0.1)
    system = (laplacian_uu + scipy.sparse.diags(weight)).tocsr()
    rhs = pull + weight * prior_u
    # Jacobi-preconditioned CG from the prior; an unconverged solve after MAX_ITERATIONS is
    # still a smooth approximation (it starts at the prior), never worse than stopping there.
    preconditioner = scipy.sparse.diags(1.0 / system.diagonal())
    solution, _ = scipy.sparse.linalg.cg(system, rhs, x0=prior_u, M=preconditioner, rtol=1e-4,
                                         maxiter=MAX_ITERATIONS)
    solved = snap_values(np.clip(solution, 0.0, 1.0), SNAP).astype(np.float32)
    alpha[box][is_unknown] = solved
