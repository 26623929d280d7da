"""Scenes: objects with alpha pasted onto real photographs, with the truth kept.

A scene is drawn for one existence split (small, medium, large: the answer
object's visible share of the image). The answer object is scaled until its
visible alpha-mask pixels (alpha >= 128, after the objects in front of it
are pasted) over the image's pixels fall inside the split's range; the other
objects are smaller and each keeps at least half of its own mask visible.
Paste order is depth order: a later object is in front of an earlier one.
"""
import colorsys

import numpy as np
from PIL import Image

SPLITS = {"small": (0.0, 0.30), "medium": (0.30, 0.60), "large": (0.60, 1.0)}
# What the answer's share is aimed at inside each split (margins keep it
# clear of the boundaries after rounding and occlusion).
TARGETS = {"small": (0.04, 0.27), "medium": (0.33, 0.57), "large": (0.64, 0.92)}
OTHERS = {"small": (1, 4), "medium": (1, 3), "large": (0, 2)}
OTHER_SHARE = {"small": (0.02, 0.12), "medium": (0.02, 0.10), "large": (0.015, 0.05)}


def split_of(share):
    for name, (lo, hi) in SPLITS.items():
        if lo <= share < hi or (name == "large" and share == 1.0):
            return name
    raise ValueError(share)


def crop_background(rgb, size, rng):
    h, w, _ = rgb.shape
    side = int(min(h, w) * rng.uniform(0.55, 1.0))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    im = Image.fromarray(rgb[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    return np.asarray(im).astype(np.float32), {"crop": [x, y, side, side]}


def scaled(rgba, k):
    h, w = rgba.shape[:2]
    nh, nw = max(2, int(round(h * k))), max(2, int(round(w * k)))
    return np.asarray(Image.fromarray(rgba).resize((nw, nh), Image.BILINEAR))


def paste(canvas, masks, layer, x, y):
    """Alpha-blends layer at (x, y) (may hang over the edges); returns the
    object's full-canvas mask (alpha >= 128)."""
    S = canvas.shape[0]
    h, w = layer.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(S, x + w), min(S, y + h)
    mask = np.zeros((S, S), dtype=bool)
    if x0 >= x1 or y0 >= y1:
        return mask
    part = layer[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32)
    a = part[..., 3:4] / 255.0
    canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - a) + part[..., :3] * a
    mask[y0:y1, x0:x1] = part[..., 3] >= 128
    for m in masks:
        m &= ~mask
    return mask


def visible_stats(mask, S):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return {"box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
            "centre": [float(xs.mean()) / S, float(ys.mean()) / S],
            "pixels": int(len(xs)), "area_share": round(len(xs) / float(S * S), 6)}


NAMED = [  # (name, test on h in [0,360), s, v)
    ("black", lambda h, s, v: v < 0.2),
    ("white", lambda h, s, v: s < 0.15 and v > 0.85),
    ("gray", lambda h, s, v: s < 0.15),
    ("brown", lambda h, s, v: 15 <= h < 45 and v < 0.6),
    ("red", lambda h, s, v: h < 15 or h >= 340),
    ("orange", lambda h, s, v: 15 <= h < 45),
    ("yellow", lambda h, s, v: 45 <= h < 70),
    ("green", lambda h, s, v: 70 <= h < 170),
    ("blue", lambda h, s, v: 170 <= h < 260),
    ("purple", lambda h, s, v: 260 <= h < 300),
    ("pink", lambda h, s, v: 300 <= h < 340),
]


def dominant_colour(rgb_pixels, min_share=0.5):
    """The named colour of at least min_share of the pixels, or None."""
    if len(rgb_pixels) == 0:
        return None
    px = rgb_pixels[:: max(1, len(rgb_pixels) // 4000)].astype(np.float32) / 255.0
    counts = {}
    for r, g, b in px:
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        h *= 360
        for name, test in NAMED:
            if test(h, s, v):
                counts[name] = counts.get(name, 0) + 1
                break
    name, n = max(counts.items(), key=lambda kv: kv[1])
    return name if n >= min_share * len(px) else None


def _place(objs, split, S, rng):
    """Draws scale and position for each object; the answer is objs[0]."""
    lo, hi = TARGETS[split]
    placed = []
    for i, o in enumerate(objs):
        alpha = (o["rgba"][..., 3] >= 128).sum()
        if i == 0:
            t = rng.uniform(lo, hi)
        else:
            t = rng.uniform(*OTHER_SHARE[split])
        k = np.sqrt(t * S * S / max(alpha, 1))
        placed.append({"k": float(k), "t": float(t)})
    return placed


def compose(bg_rgb, objs, split, S, rng, tries=12):
    """objs[0] is the answer. Returns (rgb uint8, truth) or None when no
    arrangement met the split and the visibility rules."""
    for _ in range(tries):
        canvas, bg_meta = crop_background(bg_rgb, S, rng)
        plan = _place(objs, split, S, rng)
        order = list(rng.permutation(len(objs)))
        if split == "large":  # the big one goes behind the small ones
            order.remove(0)
            order.insert(0, 0)
        # refine the answer's scale a few times against its measured share
        for _refine in range(4):
            cv = canvas.copy()
            masks, layers, positions = [None] * len(objs), [None] * len(objs), [None] * len(objs)
            for idx in order:
                layer = scaled(objs[idx]["rgba"], plan[idx]["k"])
                h, w = layer.shape[:2]
                if h <= S and w <= S:
                    x, y = int(rng.integers(0, S - w + 1)), int(rng.integers(0, S - h + 1))
                else:  # larger than the canvas: a window of it, centred-ish
                    x = -int(rng.integers(0, max(1, w - S) + 1)) if w > S else int(rng.integers(0, S - w + 1))
                    y = -int(rng.integers(0, max(1, h - S) + 1)) if h > S else int(rng.integers(0, S - h + 1))
                m = paste(cv, [mm for mm in masks if mm is not None], layer, x, y)
                masks[idx], layers[idx], positions[idx] = m, (w, h), (x, y)
            share = masks[0].sum() / float(S * S)
            if split_of(share) == split and TARGETS[split][0] * 0.8 <= share:
                break
            target = plan[0]["t"]
            plan[0]["k"] *= float(np.sqrt(target / max(share, 1e-4)))
            # never more than three canvases across: a tiny measured share
            # (the object mostly off the canvas) must not blow the scale up
            h0, w0 = objs[0]["rgba"].shape[:2]
            plan[0]["k"] = min(plan[0]["k"], 3.0 * S / max(h0, w0))
        else:
            continue
        ok = True
        truth = []
        for idx, o in enumerate(objs):
            own = (scaled(o["rgba"], plan[idx]["k"])[..., 3] >= 128).sum()
            st = visible_stats(masks[idx], S)
            if st is None or (idx > 0 and st["pixels"] < 0.5 * own) or st["pixels"] < 40:
                ok = False
                break
            z = order.index(idx)
            colour = dominant_colour(cv.astype(np.uint8)[masks[idx]])
            truth.append(dict(category=o["category"], name=o["name"], file=o["file"], z=int(z),
                              scale=round(plan[idx]["k"], 4), position=list(positions[idx]),
                              visible_fraction=round(st["pixels"] / float(max(own, 1)), 4),
                              colour=colour, **st))
        if not ok:
            continue
        # overlaps: pairs whose full masks intersect; the later one is in front
        pairs = []
        full = {}
        for idx in range(len(objs)):
            layer = scaled(objs[idx]["rgba"], plan[idx]["k"])
            fm = np.zeros((S, S), dtype=bool)
            x, y = positions[idx]
            h, w = layer.shape[:2]
            x0, y0, x1, y1 = max(0, x), max(0, y), min(S, x + w), min(S, y + h)
            if x0 < x1 and y0 < y1:
                fm[y0:y1, x0:x1] = layer[y0 - y:y1 - y, x0 - x:x1 - x, 3] >= 128
            full[idx] = fm
        for a in range(len(objs)):
            for b in range(a + 1, len(objs)):
                inter = int((full[a] & full[b]).sum())
                if inter > 0:
                    front, back = (a, b) if order.index(a) > order.index(b) else (b, a)
                    pairs.append({"front": front, "back": back, "pixels": inter})
        return np.clip(cv + 0.5, 0, 255).astype(np.uint8), {"objects": truth, "overlaps": pairs,
                                                            "background": bg_meta}
    return None
