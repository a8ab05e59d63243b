"""Domain-shifted copies for the default probe set.

Stage 1 scores every model by proxy: each query sample is matched to its nearest probe samples
(in the reference encoder's space) and the model's stored outputs on those probe samples stand in
for its outputs on the query. That only works when the probe set holds images like the query's,
so besides clean Fashion-MNIST and glyphs it carries copies under the common shifts of grey-scale
image data: inversion, quarter rotations both ways, blur and additive noise.
EXTRA_SHIFTS (a half turn, inversion with each quarter turn, a random angle per image) are what
bench/rotations tried for rotated queries; they are not in the default set (docs/BENCHMARKS.md 2n:
they help rotated queries and cost others as much). New shifts go at the end, so the blocks
before them stay byte-identical.
"""
import numpy as np
from scipy import ndimage

SHIFTS = ("inv", "rot90", "rot270", "blur", "noise")
EXTRA_SHIFTS = ("rot180", "inv+rot90", "inv+rot180", "inv+rot270", "rotany")
QUARTER_TURNS = {"rot90": 1, "rot180": 2, "rot270": 3}


def shift_images(images, shift, seed):
    """images: uint8 [N, 28, 28] -> uint8 [N, 28, 28] under `shift` (one of SHIFTS)."""
    x = images.astype(np.float32) / 255.0
    if shift.startswith("inv"):
        x = 1.0 - x
        shift = shift[len("inv+"):] if shift != "inv" else ""
    if shift in QUARTER_TURNS:
        x = np.ascontiguousarray(np.rot90(x, k=QUARTER_TURNS[shift], axes=(1, 2)))
    elif shift == "rotany":
        angles = np.random.default_rng(seed).uniform(0.0, 360.0, size=len(x))
        x = np.stack([ndimage.rotate(img, a, reshape=False, order=1, mode="constant")
                      for img, a in zip(x, angles)])
    elif shift == "blur":
        x = ndimage.gaussian_filter(x, sigma=(0, 1.2, 1.2))
    elif shift == "noise":
        rng = np.random.default_rng(seed)
        x = np.clip(x + rng.normal(0.0, 0.25, size=x.shape).astype(np.float32), 0.0, 1.0)
    elif shift:
        raise ValueError(f"unknown shift {shift!r}")
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def shifted_copies(fmnist, glyphs, per_shift_fmnist, per_shift_glyphs, seed, shifts=SHIFTS):
    """Shifted copies of the first images of each source, one block per shift (in `shifts`'
    order; block i is seeded with seed + i)."""
    blocks = []
    for i, shift in enumerate(shifts):
        src = np.concatenate([fmnist[:per_shift_fmnist], glyphs[:per_shift_glyphs]])
        blocks.append(shift_images(src, shift, seed + i))
    return np.concatenate(blocks)
