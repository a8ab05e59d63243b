"""Colour images from packages: emoji (npm emoji-datasource-*) and wallpaper photographs (Debian).

Everything here is a pure function of its arguments and a seed, so the probe sets, the reference
encoders, the demo models and bench/zoo_colour draw reproducible, disjoint samples:

    from assets import colour_data as cd
    emoji = cd.load_emoji(cd.default_emoji_root())          # records, one per emoji
    probe = [e for e in emoji if cd.emoji_split(e) == "probe"]
    photos = cd.list_photos()                                # (group, package, path), sorted
    img = cd.compose_emoji(cd.emoji_rgba(root, "google", e["image"]), 32, rng, background)

Images are uint8 [H, W, 3] (channel-last) inside this module; callers transpose to [3, H, W].
Sources and licences: scripts/assets/README.md.
"""
import json
import os
import subprocess
import zlib

import numpy as np
from PIL import Image
from scipy import ndimage

# Every style has its own npm package emoji-datasource-STYLE with img/STYLE/64/*.png (64x64 RGBA).
# Licences of the images differ by style (scripts/assets/README.md): drop a style here to build
# without it.
EMOJI_STYLES = ("apple", "google", "twitter", "facebook")
# emoji.json's categories, minus "Component" (skin-tone swatches and hair parts).
EMOJI_CATEGORIES = ("Activities", "Animals & Nature", "Flags", "Food & Drink", "Objects",
                    "People & Body", "Smileys & Emotion", "Symbols", "Travel & Places")

# Disjoint parts of the emoji (by code point sequence) and of the photographs (by wallpaper):
# the dock's probe sets, the reference encoders' training data, then bench/zoo_colour's source
# models (and the demo models), then query tasks (bench tasks and the demo query folder).
SPLITS = (("probe", 0.20), ("encoder", 0.30), ("source", 0.30), ("query", 0.20))

# Debian packages whose raster wallpapers are used, in this order (scripts/setup.sh installs them;
# lomiri-wallpapers pulls in lomiri-wallpapers-16.04 and -20.04, which hold its photographs).
PHOTO_PACKAGES = ("plasma-workspace-wallpapers", "lomiri-wallpapers-16.04",
                  "lomiri-wallpapers-20.04", "lomiri-wallpapers", "ukui-wallpapers",
                  "desktop-base")

SHIFTS = ("grey", "inv", "rot90", "rot270", "blur", "noise", "lowcontrast")


def crc(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode())


def split_of(key, salt="colour-split-v1"):
    """Which of SPLITS `key` belongs to (a fixed hash, independent of what else exists)."""
    u = (crc(salt, key) % 100000) / 100000.0
    edge = 0.0
    for name, fraction in SPLITS:
        edge += fraction
        if u < edge:
            return name
    return SPLITS[-1][0]


# ------------------------------------------------------------------------------------------------
# Emoji

def default_emoji_root():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(os.path.join(here, "..", "..", "tools", "node_modules"))


def emoji_package_dir(root, style):
    return os.path.join(root, f"emoji-datasource-{style}")


def load_emoji(root):
    """Emoji drawn in every style of EMOJI_STYLES (and not Component), sorted by sort_order:
    dicts with unified, name, category, subcategory, image."""
    for style in EMOJI_STYLES:
        if not os.path.isdir(os.path.join(emoji_package_dir(root, style), "img", style, "64")):
            raise RuntimeError(
                f"emoji images of style {style!r} not found under {root}: install them with "
                f"`npm install emoji-datasource-{style}@16` in tools/ (scripts/build.sh does)")
    with open(os.path.join(emoji_package_dir(root, EMOJI_STYLES[0]), "emoji.json")) as f:
        records = json.load(f)
    out = []
    for r in sorted(records, key=lambda r: r["sort_order"]):
        if r["category"] not in EMOJI_CATEGORIES:
            continue
        if not all(r.get(f"has_img_{s}") for s in EMOJI_STYLES):
            continue
        out.append({"unified": r["unified"], "name": r.get("name") or r["short_name"],
                    "category": r["category"], "subcategory": r["subcategory"],
                    "image": r["image"]})
    return out


def emoji_split(record):
    return split_of("emoji/" + record["unified"])


_rgba_cache = {}


def emoji_rgba(root, style, image):
    """uint8 [64, 64, 4] of one emoji in one style."""
    key = (style, image)
    if key not in _rgba_cache:
        path = os.path.join(emoji_package_dir(root, style), "img", style, "64", image)
        with Image.open(path) as im:
            _rgba_cache[key] = np.asarray(im.convert("RGBA").resize((64, 64), Image.LANCZOS))
    return _rgba_cache[key]


def compose_emoji(rgba, size, rng, background):
    """The emoji scaled to 55-100% of a size x size canvas at a random place over `background`
    (uint8 [size, size, 3]); returns uint8 [size, size, 3]."""
    scale = rng.uniform(0.55, 1.0)
    side = max(4, int(round(scale * size)))
    em = Image.fromarray(rgba, "RGBA").resize((side, side), Image.LANCZOS)
    canvas = Image.fromarray(background, "RGB")
    x0 = int(rng.integers(0, size - side + 1))
    y0 = int(rng.integers(0, size - side + 1))
    canvas.paste(em, (x0, y0), em)
    return np.asarray(canvas, dtype=np.uint8)


def background(kind, size, rng, photos=None):
    """kind: white | colour (a random light or dark solid colour) | photo (a crop of one of
    `photos`, a list of uint8 [H, W, 3])."""
    if kind == "white":
        return np.full((size, size, 3), 255, np.uint8)
    if kind == "colour":
        return np.broadcast_to(rng.integers(0, 256, size=3).astype(np.uint8),
                               (size, size, 3)).copy()
    if kind == "photo":
        photo = photos[int(rng.integers(len(photos)))]
        return random_crop(photo, size, rng, scales=(0.2, 0.5))
    raise ValueError(f"unknown background {kind!r}")


BACKGROUNDS = ("white", "white", "colour", "photo")  # drawn uniformly: half white


def render_emoji(root, record, style, size, rng, photos):
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))] if photos else "white"
    return compose_emoji(emoji_rgba(root, style, record["image"]), size, rng,
                         background(kind, size, rng, photos))


def interleave_by(items, key):
    """Round-robin over groups of `items` (by key(item); groups in first-seen order): one of each
    group in turn, so that any prefix is balanced over the groups."""
    groups = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    lists = list(groups.values())
    out = []
    for i in range(max((len(g) for g in lists), default=0)):
        out += [g[i] for g in lists if i < len(g)]
    return out


# ------------------------------------------------------------------------------------------------
# Photographs

def _dpkg_files(package):
    try:
        out = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return [line.strip() for line in out.splitlines()]


def _pixels_from_name(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        w, h = (int(v) for v in stem.split("x"))
        return w * h
    except ValueError:
        return None


def list_photos():
    """One raster file per wallpaper of PHOTO_PACKAGES: [(group, package, path)] sorted by group.
    Plasma wallpapers come in many sizes: the smallest of at least 1920x1080 is kept (else the
    largest). Screenshots, logos and vector files are skipped."""
    chosen = {}
    for package in PHOTO_PACKAGES:
        for path in _dpkg_files(package):
            low = path.lower()
            if not low.endswith((".jpg", ".jpeg", ".png")) or not os.path.isfile(path):
                continue
            if "screenshot" in low or "logo" in low or "/icons/" in low or "preview" in low:
                continue
            if path.startswith("/usr/share/wallpapers/"):
                group = path.split("/")[4]
            elif path.startswith("/usr/share/plymouth/themes/"):
                if "background" not in os.path.basename(low):
                    continue  # the themes' other PNGs are logos and progress bars
                group = "plymouth-" + path.split("/")[5]
            elif path.startswith("/usr/share/backgrounds/"):
                group = os.path.splitext(os.path.basename(path))[0]
            else:
                continue
            group = group.replace(" ", "_")
            px = _pixels_from_name(path)
            best = chosen.get(group)
            if best is None:
                chosen[group] = (group, package, path, px)
                continue
            old = best[3]
            if px is not None and old is not None:
                big, old_big = px >= 1920 * 1080, old >= 1920 * 1080
                if (big and (not old_big or px < old)) or (not big and not old_big and px > old):
                    chosen[group] = (group, package, path, px)
    return [chosen[g][:3] for g in sorted(chosen)]


def photo_split(group):
    return split_of("photo/" + group)


_photo_cache = {}


def load_photo(path, max_side=1024):
    """uint8 [H, W, 3], the longest side at most max_side (JPEG decoded at reduced size)."""
    if path not in _photo_cache:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))
            im = im.convert("RGBA").convert("RGB")
            im.thumbnail((max_side, max_side), Image.BILINEAR)
            _photo_cache[path] = np.asarray(im, dtype=np.uint8)
    return _photo_cache[path]


PHOTO_SCALES = (0.1, 0.2, 0.4, 0.8)


def random_crop(photo, size, rng, scales=PHOTO_SCALES, region=None):
    """A square crop of side scale * min(H, W) (scale drawn from `scales`) resized to size x size.
    region = (x_lo, x_hi) as fractions of the width keeps the crop inside that band (disjoint
    train / test regions of one photograph)."""
    h, w = photo.shape[:2]
    scale = float(scales[int(rng.integers(len(scales)))])
    side = max(8, int(round(scale * min(h, w))))
    lo, hi = (0, w) if region is None else (int(region[0] * w), int(region[1] * w))
    side = min(side, hi - lo, h)
    x0 = int(rng.integers(lo, hi - side + 1))
    y0 = int(rng.integers(0, h - side + 1))
    crop = Image.fromarray(photo[y0:y0 + side, x0:x0 + side])
    return np.asarray(crop.resize((size, size), Image.BOX if side >= size else Image.BILINEAR),
                      dtype=np.uint8)


# ------------------------------------------------------------------------------------------------
# Domain shifts and probe order

def shift_images(images, shift, seed):
    """uint8 [N, H, W, 3] -> uint8 [N, H, W, 3] under `shift` (one of SHIFTS)."""
    x = images.astype(np.float32) / 255.0
    size = images.shape[1]
    if shift == "grey":
        lum = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = np.repeat(lum[..., None], 3, axis=3)
    elif shift == "inv":
        x = 1.0 - x
    elif shift == "rot90":
        x = np.ascontiguousarray(np.rot90(x, k=1, axes=(1, 2)))
    elif shift == "rot270":
        x = np.ascontiguousarray(np.rot90(x, k=3, axes=(1, 2)))
    elif shift == "blur":
        sigma = 1.2 * size / 32.0
        x = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0))
    elif shift == "noise":
        rng = np.random.default_rng(seed)
        x = x + rng.normal(0.0, 0.15, size=x.shape).astype(np.float32)
    elif shift == "lowcontrast":
        x = 0.3 + 0.4 * x
    else:
        raise ValueError(f"unknown shift {shift!r}")
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _merge_proportionally(groups):
    """Interleaves lists so that after every step each list has given about its share: the next
    row comes from the list furthest behind its quota (step * n_g / N - taken), ties to the
    earlier list. Every prefix then holds each list's share within one row (colour_assets_test
    checks it; Tijdeman's chairman-assignment result bounds the deviation below 1)."""
    total = sum(len(g) for g in groups)
    taken = [0] * len(groups)
    out = []
    for step in range(1, total + 1):
        best, best_deficit = -1, -np.inf
        for r, g in enumerate(groups):
            if taken[r] < len(g):
                deficit = step * len(g) / total - taken[r]
                if deficit > best_deficit + 1e-12:
                    best, best_deficit = r, deficit
        out.append(groups[best][taken[best]])
        taken[best] += 1
    return out


def balanced_order(keys, seed):
    """A permutation of range(len(keys)) in which every prefix is balanced over each level of the
    key tuples (e.g. (shift, source, class)), top level first: rows are grouped by the first level,
    each group is ordered recursively by the next levels, and the groups (in a seeded order) are
    merged so that any prefix holds every group in proportion to its size, within one row. The
    next level is balanced within each group, and so on. Rows keep their order within a leaf."""
    rng = np.random.default_rng(seed)
    depth = len(keys[0]) if keys else 0

    def order(indices, level):
        if level == depth:
            return indices
        groups = {}
        for i in indices:
            groups.setdefault(keys[i][level], []).append(i)
        names = sorted(groups)
        return _merge_proportionally([order(groups[names[p]], level + 1)
                                      for p in rng.permutation(len(names))])

    return np.array(order(list(range(len(keys))), 0), dtype=np.int64)
