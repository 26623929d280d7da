"""Rendered text and charts.

Text: real words (country and capital names from the flags, emoji names,
numbers, years and prices) drawn with FreeType (PIL) in the DejaVu fonts of
fonts-dejavu-core, dark on light or light on dark, some over a lightened
photograph. Charts: bar and line charts drawn by matplotlib (Agg) from the
real tables of npm vega-datasets, with the plotted values kept.
"""
import csv
import io
import json
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
         "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"]
FONT_DIR = "usr/share/fonts/truetype/dejavu"
LIGHT = [(255, 255, 255), (250, 245, 230), (235, 240, 250), (245, 250, 235), (255, 240, 240)]
DARK = [(0, 0, 0), (30, 30, 90), (90, 20, 20), (20, 70, 30), (60, 60, 60)]


def render_text(word, font_tree, rng, bg_rgb=None):
    font_name = FONTS[int(rng.integers(len(FONTS)))]
    size = int(rng.integers(26, 49))
    font = ImageFont.truetype(os.path.join(font_tree, FONT_DIR, font_name), size)
    box = font.getbbox(word)
    pad_x, pad_y = int(rng.integers(10, 40)), int(rng.integers(8, 30))
    w, h = box[2] - box[0] + 2 * pad_x, box[3] - box[1] + 2 * pad_y
    invert = rng.random() < 0.25
    ink = LIGHT[int(rng.integers(len(LIGHT)))] if invert else DARK[int(rng.integers(len(DARK)))]
    paper = DARK[int(rng.integers(len(DARK)))] if invert else LIGHT[int(rng.integers(len(LIGHT)))]
    style = "inverse" if invert else "plain"
    if bg_rgb is not None and not invert and rng.random() < 0.4:
        bh, bw, _ = bg_rgb.shape
        side_w, side_h = min(bw, w), min(bh, h)
        y, x = int(rng.integers(0, bh - side_h + 1)), int(rng.integers(0, bw - side_w + 1))
        crop = Image.fromarray(bg_rgb[y:y + side_h, x:x + side_w]).resize((w, h), Image.BILINEAR)
        # lightened so that dark ink stays legible
        im = Image.fromarray((np.asarray(crop).astype(np.float32) * 0.3 + 255 * 0.7).astype(np.uint8))
        style = "photo"
    else:
        im = Image.new("RGB", (w, h), paper)
    ImageDraw.Draw(im).text((pad_x - box[0], pad_y - box[1]), word, font=font, fill=ink)
    return np.asarray(im), {"text": word, "font": font_name, "font_px": size, "ink": list(ink),
                            "style": style}


# ---------------------------------------------------------------- tables

def _vega(tree, name):
    path = os.path.join(tree, "package", "data", name)
    if name.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def chart_specs(tree):
    """Every chart the tables allow: (key, kind, title, labels, values, unit, table)."""
    specs = []
    gap = _vega(tree, "gapminder.json")
    years = sorted({r["year"] for r in gap})
    countries = sorted({r["country"] for r in gap})
    by = {(r["country"], r["year"]): r for r in gap}
    metrics = [("life_expect", "Life expectancy", "years", 1), ("fertility", "Fertility", "children per woman", 2)]
    for y in years:
        for m, title, unit, nd in metrics:
            specs.append(("gapminder-bar:%s:%d" % (m, y), "bar", "%s in %d" % (title, y),
                          [(c, round(by[(c, y)][m], nd)) for c in countries if (c, y) in by], unit,
                          "gapminder.json"))
    for c in countries:
        pts = [(str(y), round(by[(c, y)]["life_expect"], 1)) for y in years if (c, y) in by]
        specs.append(("gapminder-line:%s" % c, "line", "Life expectancy in %s" % c, pts, "years",
                      "gapminder.json"))
    barley = _vega(tree, "barley.json")
    for site in sorted({r["site"] for r in barley}):
        for year in (1931, 1932):
            rows = sorted((r["variety"], round(r["yield"], 1)) for r in barley
                          if r["site"] == site and r["year"] == year)
            specs.append(("barley-bar:%s:%d" % (site, year), "bar", "Barley yield at %s, %d" % (site, year),
                          rows, "bushels per acre", "barley.json"))
    stocks = _vega(tree, "stocks.csv")
    for sym in sorted({r["symbol"] for r in stocks}):
        for year in range(2000, 2010):
            pts = [(d["date"].split()[0], round(float(d["price"]), 1)) for d in stocks
                   if d["symbol"] == sym and d["date"].endswith(str(year))]
            if len(pts) == 12:
                specs.append(("stocks-line:%s:%d" % (sym, year), "line", "%s share price, %d" % (sym, year),
                              pts, "US dollars", "stocks.csv"))
    weather = _vega(tree, "seattle-weather.csv")
    for year in ("2012", "2013", "2014", "2015"):
        tot = [0.0] * 12
        for r in weather:
            if r["date"].startswith(year):
                tot[int(r["date"][5:7]) - 1] += float(r["precipitation"])
        specs.append(("seattle-bar:%s" % year, "bar", "Seattle precipitation by month, %s" % year,
                      [(MONTHS[i], round(tot[i], 1)) for i in range(12)], "mm", "seattle-weather.csv"))
    return specs


def select_points(spec, rng):
    """A bar chart shows 4-7 of its labels (values distinct, so that the
    highest is one bar); a line chart all its points."""
    key, kind, title, pts, unit, table = spec
    if kind == "line":  # a window of 6 or more consecutive points
        n = int(rng.integers(6, len(pts) + 1))
        lo = int(rng.integers(0, len(pts) - n + 1))
        return pts[lo:lo + n]
    for _ in range(20):
        n = int(rng.integers(4, min(7, len(pts)) + 1))
        idx = sorted(rng.choice(len(pts), size=n, replace=False))
        sel = [pts[i] for i in idx]
        vals = sorted(v for _, v in sel)
        if all(b - a > 0.03 * max(abs(vals[-1]), 1e-9) for a, b in zip(vals, vals[1:])):
            return sel
    return None


def render_chart(spec, pts, rng, annotate):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    key, kind, title, _, unit, table = spec
    fig = plt.figure(figsize=(4.8, 3.6), dpi=80)
    ax = fig.add_subplot(111)
    labels = [p[0] for p in pts]
    vals = [p[1] for p in pts]
    colour = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"][int(rng.integers(5))]
    if kind == "bar":
        bars = ax.bar(range(len(vals)), vals, color=colour)
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(labels, rotation=30 if max(len(s) for s in labels) > 6 else 0, ha="right"
                           if max(len(s) for s in labels) > 6 else "center", fontsize=8)
        if annotate:
            for b, v in zip(bars, vals):
                ax.annotate("%g" % v, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                            va="bottom", fontsize=8)
    else:
        ax.plot(range(len(vals)), vals, marker="o", color=colour)
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        if annotate:
            for i, v in enumerate(vals):
                ax.annotate("%g" % v, (i, v), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=6)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit, fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb
