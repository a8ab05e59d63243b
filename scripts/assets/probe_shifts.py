"""Domain-shifted copies for the default probe set.

Stage 1 scores every model by proxy: each query sample is matched to its nearest probe samples
(in the reference encoder's space) and the model's stored outputs on those probe samples stand in
for its outputs on the query. That only works when the probe set holds images like the query's,
so besides clean Fashion-MNIST and glyphs it carries copies under the common shifts of grey-scale
image data: inversion, quarter rotations both ways, blur and additive noise.
"""
import numpy as np
from scipy import ndimage

SHIFTS = ("inv", "rot90", "rot270", "blur", "noise")


def shift_images(images, shift, seed):
    """images: uint8 [N, 28, 28] -> uint8 [N, 28, 28] under `shift` (one of SHIFTS)."""
    x = images.astype(np.float32) / 255.0
    if shift == "inv":
        x = 1.0 - x
    elif shift == "rot90":
        x = np.ascontiguousarray(np.rot90(x, k=1, axes=(1, 2)))
    elif shift == "rot270":
        x = np.ascontiguousarray(np.rot90(x, k=3, axes=(1, 2)))
    elif shift == "blur":
        x = ndimage.gaussian_filter(x, sigma=(0, 1.2, 1.2))
    elif shift == "noise":
        rng = np.random.default_rng(seed)
        x = np.clip(x + rng.normal(0.0, 0.25, size=x.shape).astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"unknown shift {shift!r}")
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def shifted_copies(fmnist, glyphs, per_shift_fmnist, per_shift_glyphs, seed):
    """Shifted copies of the first images of each source, one block per shift (SHIFTS order)."""
    blocks = []
    for i, shift in enumerate(SHIFTS):
        src = np.concatenate([fmnist[:per_shift_fmnist], glyphs[:per_shift_glyphs]])
        blocks.append(shift_images(src, shift, seed + i))
    return np.concatenate(blocks)
