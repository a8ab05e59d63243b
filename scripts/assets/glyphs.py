"""Digit and letter images rendered from Debian's fonts, in the MNIST convention: white glyph on a
black 28x28 background, fitted into a 20x20 box and centred, with optional small affine jitter.

    from assets.glyphs import DIGITS, LETTERS, list_fonts, render_glyphs
    images, labels = render_glyphs(DIGITS, list_fonts(), n_per_char=50, seed=1)
"""
import glob
import os
import subprocess

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# Packages in scripts/setup.sh: fonts-dejavu-core, fonts-liberation2, fonts-urw-base35,
# fonts-texgyre (the last installs under texmf, not /usr/share/fonts).
_FONT_GLOBS = [
    "/usr/share/fonts/**/*.ttf",
    "/usr/share/fonts/**/*.otf",
    "/usr/share/texmf/fonts/opentype/public/tex-gyre/*.otf",
]
_FAMILY_MARKERS = ("dejavu", "liberation", "urw-base35", "tex-gyre", "texgyre")
# Fonts whose ASCII code points are not Latin letters and digits (symbols, dingbats, maths).
_EXCLUDED = ("symbol", "d050000l", "dingbat", "math")

_RENDER_PX = 64      # font size of the high-resolution rendering
_SUPERSAMPLE = 4     # work at 4x the output size, then box-filter down
_BOX_FRACTION = 20 / 28  # MNIST fits digits into 20x20 of 28x28


def list_fonts():
    """Font files usable for Latin digits and letters, sorted by file name (deterministic across
    machines with the same packages). Falls back to fc-list when the globs find nothing."""
    paths = set()
    for pattern in _FONT_GLOBS:
        paths.update(glob.glob(pattern, recursive=True))
    if not paths:
        try:
            out = subprocess.run(["fc-list", ":", "file"], capture_output=True, text=True,
                                 check=True).stdout
            paths = {line.split(":")[0].strip() for line in out.splitlines()}
            paths = {p for p in paths if p.endswith((".ttf", ".otf"))}
        except (OSError, subprocess.CalledProcessError):
            paths = set()
    by_name = {}
    for path in paths:
        low = path.lower()
        if not any(m in low for m in _FAMILY_MARKERS):
            continue
        if any(x in os.path.basename(low) for x in _EXCLUDED):
            continue
        by_name.setdefault(os.path.basename(path), path)  # one copy per file name
    fonts = [by_name[name] for name in sorted(by_name)]
    if not fonts:
        raise RuntimeError("no usable fonts found; install the fonts-* packages of scripts/setup.sh")
    return fonts


_font_cache = {}


def _font(path):
    font = _font_cache.get(path)
    if font is None:
        font = ImageFont.truetype(path, _RENDER_PX)
        _font_cache[path] = font
    return font


def _render_one(font, ch, size, rng, jitter):
    big = _RENDER_PX * 2
    canvas = Image.new("L", (big, big), 0)
    stroke = int(rng.choice([0, 0, 1, 2])) if jitter else 0
    ImageDraw.Draw(canvas).text((big // 2, big // 2), ch, fill=255, font=font, anchor="mm",
                                stroke_width=stroke, stroke_fill=255)
    bbox = canvas.getbbox()
    if bbox is None:
        raise ValueError(f"font {font.path} renders nothing for {ch!r}")
    glyph = canvas.crop(bbox)

    # Fit the glyph into the MNIST box (aspect kept), at supersampled resolution.
    out = size * _SUPERSAMPLE
    box = _BOX_FRACTION * out
    w, h = glyph.size
    scale = box / max(w, h)
    if jitter:
        scale *= rng.uniform(0.85, 1.05)
    gw, gh = max(1, round(w * scale)), max(1, round(h * scale))
    glyph = glyph.resize((gw, gh), Image.LANCZOS)
    sheet = Image.new("L", (out, out), 0)
    sheet.paste(glyph, ((out - gw) // 2, (out - gh) // 2))

    if jitter:
        # Inverse affine map (output -> input) about the centre: rotation, shear, translation.
        angle = np.deg2rad(rng.uniform(-12, 12))
        shear = rng.uniform(-0.15, 0.15)
        tx, ty = rng.uniform(-1.5, 1.5, size=2) * _SUPERSAMPLE
        c, s = np.cos(angle), np.sin(angle)
        m = np.array([[c, -s + shear * c], [s, c + shear * s]])
        inv = np.linalg.inv(m)
        centre = np.array([out / 2, out / 2])
        offset = centre - inv @ (centre + np.array([tx, ty]))
        sheet = sheet.transform((out, out), Image.AFFINE,
                                (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1]),
                                resample=Image.BILINEAR)
    return np.asarray(sheet.resize((size, size), Image.BOX), dtype=np.uint8)


def render_glyphs(chars, fonts, n_per_char, seed, size=28, jitter=True):
    """Renders n_per_char images of each character in `chars` (a string or list of 1-char strings),
    cycling through `fonts` from a seeded offset per character. Returns (uint8 [N, size, size],
    int64 labels [N]) with N = len(chars) * n_per_char, grouped by character; label = position of
    the character in `chars`. Same arguments, same pixels."""
    if not fonts:
        raise ValueError("render_glyphs: no fonts given")
    rng = np.random.default_rng(seed)
    images = np.zeros((len(chars) * n_per_char, size, size), dtype=np.uint8)
    labels = np.repeat(np.arange(len(chars), dtype=np.int64), n_per_char)
    i = 0
    for ch in chars:
        offset = int(rng.integers(len(fonts)))
        for j in range(n_per_char):
            images[i] = _render_one(_font(fonts[(offset + j) % len(fonts)]), ch, size, rng, jitter)
            i += 1
    return images, labels
