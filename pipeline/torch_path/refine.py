"""The refinement chain's torch twins: outline, full-size alpha and foreground on the device.

The same steps and constants as pipeline.edges (soft zones, settled interiors, steepening),
pipeline.upsample (the colour guided upsample) and Pipeline._foreground (the working-size
correction applied at full size), on (H, W) / (3, H, W) tensors. On a GPU host these steps in
NumPy took ~0.5 s of one core per 1 MP photo and held the pipeline thread, while the GPU
segmented a batch of 64 in 0.1 s. Distance transforms become poolings: a pixel within chessboard
distance k of a region is one max-pool of width 2k + 1 away from it, the taxicab ball is k
cross-shaped steps and the Euclidean disk one convolution, which is all the thresholds here ask of
them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.edges import CONFIDENT_HIGH, CONFIDENT_LOW, SETTLED_DEPTH, SHARPNESS, SOLID_DEPTH, TRANSITION_WIDTH
from pipeline.second_opinion import UNDECIDED_DEPTH, UNDECIDED_LOW
from pipeline.upsample import GUIDE_EPS, GUIDE_RADIUS


def _planes(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (N, 1, H, W): every plane (a photo's map, an image's channel) pooled or resized alone."""
    return x.reshape(-1, 1, *x.shape[-2:])


def _pool_max(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over the (2 radius + 1)^2 window, pixels outside the picture ignored. x: (..., H, W) float."""
    return F.max_pool2d(_planes(x), 2 * radius + 1, stride=1, padding=radius).reshape(x.shape)


def within_chessboard(region: torch.Tensor, distance: int) -> torch.Tensor:
    """(..., H, W) bool: pixels at chessboard distance <= distance from a pixel of `region`."""
    if distance <= 0:
        return region.clone()
    return _pool_max(region.float(), distance) > 0


def within_disk(region: torch.Tensor, radius: int) -> torch.Tensor:
    """(..., H, W) bool: pixels at Euclidean distance <= radius from a pixel of `region` (a
    convolution with the disk: scipy's distance_transform_edt thresholded)."""
    if radius <= 0:
        return region.clone()
    offsets = torch.arange(-radius, radius + 1, device=region.device, dtype=torch.float32)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius * radius).float()[None, None]
    reached = F.conv2d(_planes(region).float(), disk, padding=radius)
    return (reached > 0.5).reshape(region.shape)


def dilate_cross(region: torch.Tensor, iterations: int) -> torch.Tensor:
    """scipy.ndimage.binary_dilation with its default (cross) structure, `iterations` times. (..., H, W)."""
    grown = region.clone()
    height, width = region.shape[-2:]
    for _ in range(iterations):
        padded = F.pad(_planes(grown).float(), (1, 1, 1, 1)).reshape(*region.shape[:-2], height + 2, width + 2) > 0
        grown = (grown | padded[..., :-2, 1:-1] | padded[..., 2:, 1:-1] | padded[..., 1:-1, :-2]
                 | padded[..., 1:-1, 2:])
    return grown


def split_soft_regions(mask: torch.Tensor, width: int = TRANSITION_WIDTH) -> tuple[torch.Tensor, torch.Tensor]:
    """pipeline.edges.split_soft_regions on a tensor, or a stack of them -> (transition, matter) bool masks.

    A mask without confident foreground (or background) has no transition: every near_fg (near_bg)
    is then empty, so no test of it is needed (nor the wait for the GPU that reading one costs)."""
    soft = (mask > CONFIDENT_LOW) & (mask < CONFIDENT_HIGH)
    fg, bg = mask >= CONFIDENT_HIGH, mask <= CONFIDENT_LOW
    # to_fg + to_bg <= width for a grey pixel (both >= 1) <=> to_fg <= i and to_bg <= width - i for some i.
    near_fg = [within_chessboard(fg, i) for i in range(width)]
    near_bg = [within_chessboard(bg, i) for i in range(width)]
    close = torch.zeros_like(soft)
    for i in range(1, width):
        close |= near_fg[i] & near_bg[width - i]
    transition = soft & close
    return transition, soft & ~transition


def settle_confident_interiors(alpha: torch.Tensor, depth: int = SETTLED_DEPTH,
                               solid_depth: int = SOLID_DEPTH) -> torch.Tensor:
    """pipeline.edges.settle_confident_interiors: exactly 0 / 1 more than `depth` pixels from any
    doubt, and 1 more than `solid_depth` pixels (Euclidean: a disk's convolution) inside the subject's
    outline (the 0.5 cut).
    alpha: (H, W) or a stack (..., H, W), each map settled alone."""
    settled = alpha.clone()
    for confident, value, reach, within in ((alpha >= CONFIDENT_HIGH, 1.0, depth, within_chessboard),
                                            (alpha <= CONFIDENT_LOW, 0.0, depth, within_chessboard),
                                            (alpha >= 0.5, 1.0, solid_depth, within_disk)):
        # A map confident all over has no pixel to measure from: scipy's transform answers -1, nothing settles.
        measurable = (~confident).flatten(-2).any(-1)[..., None, None]
        deep = ~within(~confident, reach) & measurable
        settled = torch.where(deep, value, settled)
    return settled


def sharpen(alpha: torch.Tensor, sharpness: float = SHARPNESS) -> torch.Tensor:
    scale = torch.tanh(torch.tensor(sharpness / 2, dtype=alpha.dtype))
    return 0.5 + 0.5 * torch.tanh(sharpness * (alpha - 0.5)) / scale


def steepen_doubt(alpha: torch.Tensor, sharpness: float = SHARPNESS) -> torch.Tensor:
    inside = (alpha > CONFIDENT_LOW) & (alpha < CONFIDENT_HIGH)
    span = CONFIDENT_HIGH - CONFIDENT_LOW
    steep = CONFIDENT_LOW + span * sharpen((alpha - CONFIDENT_LOW) / span, sharpness)
    return torch.where(inside, steep, alpha)


def resize(x: torch.Tensor, height: int, width: int, antialias: bool = False) -> torch.Tensor:
    """Bilinear resize of (..., H, W), each plane alone (PIL's sampling: half-pixel centres)."""
    out = F.interpolate(_planes(x).float(), size=(height, width), mode="bilinear", align_corners=False,
                        antialias=antialias)
    return out.reshape(*x.shape[:-2], height, width)


def _box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """scipy.ndimage.uniform_filter(mode="reflect") for (..., H, W): edges repeat their own pixels."""
    shape = x.shape
    flat = x.reshape(-1, 1, *shape[-2:])
    flat = torch.cat([flat[..., :radius].flip(-1), flat, flat[..., -radius:].flip(-1)], -1)
    flat = torch.cat([flat[..., :radius, :].flip(-2), flat, flat[..., -radius:, :].flip(-2)], -2)
    return F.avg_pool2d(flat, 2 * radius + 1, stride=1).reshape(shape)


def guided_coefficients(guide: torch.Tensor, source: torch.Tensor, radius: int = GUIDE_RADIUS,
                        eps: float = GUIDE_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """pipeline.upsample.guided_coefficients: guide (..., 3, h, w), source (..., h, w) -> (A (..., 3, h, w),
    b (..., h, w)); a stack of photos is solved photo by photo."""
    channel = guide.unbind(-3)
    mean_i = _box_mean(guide, radius)
    mean_p = _box_mean(source, radius)
    cov_ip = _box_mean(guide * source.unsqueeze(-3), radius) - mean_i * mean_p.unsqueeze(-3)
    products = torch.stack([channel[i] * channel[j] for i in range(3) for j in range(i, 3)], dim=-3)
    var = _box_mean(products, radius).unbind(-3)
    mean = mean_i.unbind(-3)
    pairs = [(i, j) for i in range(3) for j in range(i, 3)]
    v = {pair: var[k] - mean[pair[0]] * mean[pair[1]] + (eps if pair[0] == pair[1] else 0.0)
         for k, pair in enumerate(pairs)}
    a, b, c, d, e, f = v[0, 0], v[0, 1], v[0, 2], v[1, 1], v[1, 2], v[2, 2]
    inv_aa, inv_ab, inv_ac = d * f - e * e, c * e - b * f, b * e - c * d
    inv_bb, inv_bc, inv_cc = a * f - c * c, b * c - a * e, a * d - b * b
    determinant = a * inv_aa + b * inv_ab + c * inv_ac
    x, y, z = cov_ip.unbind(-3)
    coeff_a = torch.stack([inv_aa * x + inv_ab * y + inv_ac * z, inv_ab * x + inv_bb * y + inv_bc * z,
                           inv_ac * x + inv_bc * y + inv_cc * z], dim=-3) / determinant.unsqueeze(-3)
    coeff_b = mean_p - (coeff_a * mean_i).sum(-3)
    return _box_mean(coeff_a, radius), _box_mean(coeff_b, radius)


def guided_upsample(image: torch.Tensor, small_image: torch.Tensor, small_alpha: torch.Tensor,
                    radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS) -> torch.Tensor:
    """pipeline.upsample.guided_upsample: (3, H, W) photo, its working-size copy and alpha -> (H, W) alpha
    (or stacks of them: (..., 3, H, W) photos -> (..., H, W))."""
    height, width = image.shape[-2:]
    coeff_a, coeff_b = guided_coefficients(small_image, small_alpha, radius, eps)
    # As on the CPU: the photo's edges only matter near a change of alpha; elsewhere the plain upsample.
    varying = _pool_max(small_alpha, 1) + _pool_max(-small_alpha, 1) > 1e-3
    active = dilate_cross(varying, radius + 2)
    plain = resize(small_alpha, height, width).clamp(0, 1)
    guided = (resize(coeff_a, height, width) * image).sum(-3) + resize(coeff_b, height, width)
    near = F.interpolate(_planes(active).float(), size=(height, width), mode="nearest").reshape(plain.shape) > 0
    return torch.where(near, guided.clamp(0, 1), plain)


def to_full_size(image: torch.Tensor, small_image: torch.Tensor, alpha: torch.Tensor, crisp: torch.Tensor,
                 doubt: torch.Tensor, full_resolution: bool) -> torch.Tensor:
    """Pipeline._to_full_size on the device: guided outline, crisp edges and doubt steepened. One photo
    ((3, H, W) photo, (h, w) maps) or a stack of photos of one size ((n, 3, H, W), (n, h, w))."""
    height, width = image.shape[-2:]
    if tuple(alpha.shape[-2:]) == (height, width):
        if not full_resolution:
            return alpha.clone()
        full = torch.where(crisp, sharpen(alpha), alpha)
        return torch.where(doubt, steepen_doubt(full), full)
    if not full_resolution:
        return resize(alpha, height, width).clamp(0, 1)
    full = guided_upsample(image, small_image, alpha)
    crisp_weight = resize(crisp.float(), height, width).clamp(0, 1)
    full = full + crisp_weight * (sharpen(full) - full)
    # Applied even where no pixel is in doubt (weight 0 changes nothing): asking would wait for the GPU.
    doubt_weight = resize(doubt.float(), height, width).clamp(0, 1)
    return full + doubt_weight * (steepen_doubt(full) - full)


def foreground_at_full_size(image: torch.Tensor, small_image: torch.Tensor, small_foreground: torch.Tensor,
                            full_alpha: torch.Tensor) -> torch.Tensor:
    """Pipeline._foreground's full-size step: the working-size correction, only where alpha is partial."""
    if small_foreground.shape == image.shape:
        return small_foreground
    height, width = image.shape[-2:]
    correction = resize(small_foreground - small_image, height, width)
    partial = ((full_alpha > 0.0) & (full_alpha < 1.0)).unsqueeze(-3)
    return torch.where(partial, (image + correction).clamp(0, 1), image)


def undecided(mask: torch.Tensor) -> torch.Tensor:
    """pipeline.second_opinion.undecided on a tensor or a stack: grey below the cut more than
    UNDECIDED_DEPTH px (Euclidean) from confident background."""
    grey = (mask >= UNDECIDED_LOW) & (mask < 0.5)
    return grey & ~within_disk(mask <= CONFIDENT_LOW, UNDECIDED_DEPTH)
