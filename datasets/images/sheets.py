"""Look before trusting: contact sheets and the tesseract legibility check.

A contact sheet is a grid of sample images of one task file, each with its
question and answer printed under it (DejaVu Sans), written to
DIR/sheets/<file>.png. The OCR check runs tesseract (--psm 7, one line) on a
sample of the evaluation and training text images and compares what it
reads with the rendered text, case, accents and typographic apostrophes
folded (fold() below); the exact count is printed too.
"""
import os
import re
import subprocess
import tempfile
import textwrap
import unicodedata

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import store

CELL, TEXT_H, COLS = 200, 78, 6
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _font(size):
    for path in (FONT,):
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def _sample(items, n):
    if len(items) <= n:
        return items
    step = len(items) / float(n)
    return [items[int(k * step)] for k in range(n)]


def sheet(dir_, task, items, readers, n=24):
    items = _sample(items, n)
    rows = (len(items) + COLS - 1) // COLS
    im = Image.new("RGB", (COLS * CELL, max(1, rows) * (CELL + TEXT_H)), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    font = _font(10)
    for k, it in enumerate(items):
        x, y = (k % COLS) * CELL, (k // COLS) * (CELL + TEXT_H)
        r = readers[it.get("image_set", task)]
        pic = Image.fromarray(np.asarray(r.image(it["image"])))
        pic.thumbnail((CELL - 4, CELL - 4))
        im.paste(pic, (x + (CELL - pic.width) // 2, y + (CELL - pic.height) // 2))
        if "question" in it:
            text = it["question"]
            if it.get("choices"):
                text += " [" + " | ".join(it["choices"]) + "]"
            text += " -> " + it["answer"]
            if "area_share" in it:
                text += " (%s %.2f)" % (it["split"], it["area_share"])
        elif "conversations" in it:
            text = " / ".join(t["value"].replace("<image>\n", "") for t in it["conversations"][:2])
        else:
            text = it.get("caption") or it.get("text") or it.get("title") or ", ".join(
                "%s z%d %.2f" % (o["category"], o["z"], o["area_share"]) for o in it.get("objects", []))
        lines = textwrap.wrap(text, 38)[:6]
        draw.multiline_text((x + 3, y + CELL), "\n".join(lines), fill=(0, 0, 0), font=font, spacing=1)
    os.makedirs(os.path.join(dir_, "sheets"), exist_ok=True)
    path = os.path.join(dir_, "sheets", task + ".png")
    im.save(path + ".tmp.png")
    os.replace(path + ".tmp.png", path)
    return path


def all_sheets(dir_):
    readers = {s: store.SetReader(os.path.join(dir_, s + ".h5")) for s in ("captions", "scenes", "text", "charts")}
    out = []
    for task in ("captions", "scenes", "text", "charts", "align", "instruct", "vqa", "existence"):
        items = [x for x in store.read_jsonl(os.path.join(dir_, task + ".jsonl")) if "image" in x]
        if task == "vqa":  # a few of each category
            by = {}
            for x in items:
                by.setdefault(x["category"], []).append(x)
            items = [x for c in sorted(by) for x in _sample(by[c], 6)]
        if task == "existence":
            items = [x for s in ("small", "medium", "large") for x in _sample(
                [e for e in items if e["split"] == s], 8)]
        out.append(sheet(dir_, task, items, readers))
    return out


def ocr_check(dir_, sample):
    import shutil
    if not shutil.which("tesseract"):
        raise store.Error("tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-eng)")
    r = store.SetReader(os.path.join(dir_, "text.h5"))
    recs = _sample(store.read_jsonl(os.path.join(dir_, "text.jsonl")), sample)
    ok, exact, bad, folded = 0, 0, [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rec in recs:
            path = os.path.join(tmp, "w.png")
            Image.fromarray(np.asarray(r.image(rec["image"]))).save(path)
            p = subprocess.run(["tesseract", path, "stdout", "--psm", "7", "-l", "eng"],
                               capture_output=True, text=True)
            got = p.stdout.strip()
            if got.lower() == rec["text"].lower():
                exact += 1
            if fold(got) == fold(rec["text"]):
                ok += 1
            else:
                bad.append((rec["text"], got))
            if got.lower() != rec["text"].lower() and fold(got) == fold(rec["text"]):
                folded.append((rec["text"], got))
    print("images: tesseract: %d of %d exactly, %d more with accents or apostrophes folded" % (
        exact, len(recs), len(folded)), flush=True)
    return ok, len(recs), bad


def fold(text):
    """What the check compares: lower case, accents dropped (tesseract's eng
    model has no accented letters, so it reads Parana for Parana with an
    acute), typographic apostrophes as ', no space beside a hyphen or an
    apostrophe."""
    t = unicodedata.normalize("NFKD", text.lower())
    t = "".join(c for c in t if not unicodedata.combining(c))
    t = t.replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\s*([-'])\s*", r"\1", t).strip()
