#!/usr/bin/env python3
"""presight's default image sets and their tasks, from real pictures.

Usage:
  images.py build  [--out DIR] [--profile small|full] [--seed N]
  images.py check  DIR                 re-read every set and task file
  images.py sheets DIR                 contact sheets DIR/sheets/<file>.png
  images.py ocr    DIR [--sample N]    tesseract legibility of the text set
  images.py import --format llava|bench --input FILE --images DIR --out DIR
                   --set NAME [--max-bad N]

build writes into DIR (data/images for full, data/images/small for small):
  captions.h5/.jsonl  flags, named emoji (and stamps: full) with their captions
  scenes.h5/.jsonl    objects pasted on photographs, with the ground truth
  text.h5/.jsonl      words rendered in real fonts
  charts.h5/.jsonl    bar and line charts of real tables, with the values
  align.jsonl         stage-1 image-caption pairs (training pictures only)
  instruct.jsonl      stage-2 instructions, visual and language-only (LLaVA)
  vqa.jsonl           evaluation questions in the four categories
  existence.jsonl     evaluation: which of these appears, by object size
  <set>.card.json, summary.json, .stamp (the build key; a current one makes
  a second build a no-op)
Everything is drawn from --seed; the same seed and packages give the same
bytes (tests/t_images.sh checks it).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import numpy as np  # noqa: E402

import compose  # noqa: E402
import heldout  # noqa: E402
import pictures  # noqa: E402
import render  # noqa: E402
import sources  # noqa: E402
import store  # noqa: E402
import tasks  # noqa: E402

PROFILES = {
    # captions: flags, emoji, stamps (None: all); scenes per split and role;
    # text and chart images per role; scene side in pixels
    "small": dict(flags=160, emoji=160, stamps=0, scenes=40, text=(80, 60), charts=(40, 30), side=160,
                  language=600),
    # the determinism test's: seconds
    "tiny": dict(flags=24, emoji=24, stamps=0, scenes=3, text=(8, 6), charts=(3, 2), side=96, language=40),
    "full": dict(flags=None, emoji=None, stamps=None, scenes=400, text=(1000, 500), charts=(300, 200),
                 side=256, language=None),
}
LANGUAGE_SHARE = 0.4  # language-only share of the stage-2 instructions (paper: 1.5M of 3.5M)
EVAL_OBJECT_SHARE = 0.3


def log(msg):
    print("images: " + msg, flush=True)


class Progress:
    def __init__(self, what, total):
        self.what, self.total, self.n, self.t0, self.last = what, total, 0, time.time(), 0

    def step(self, k=1):
        self.n += k
        now = time.time()
        if now - self.last > 5 or self.n == self.total:
            rate = self.n / max(now - self.t0, 1e-6)
            eta = (self.total - self.n) / max(rate, 1e-6)
            log("%s %d/%d (%.1f/s, ETA %ds)" % (self.what, self.n, self.total, rate, eta))
            self.last = now


def rng_for(seed, *key):
    h = hashlib.sha256(("%d:" % seed + ":".join(str(k) for k in key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


# The code a build's bytes depend on (the sheets, OCR and import code do not).
BUILD_MODULES = ("compose.py", "heldout.py", "images.py", "pictures.py", "render.py", "sources.py", "store.py",
                 "tasks.py")


def code_key(profile, seed):
    h = hashlib.sha256(("%s:%d" % (profile, seed)).encode())
    for name in BUILD_MODULES:
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    for k in sorted(sources.PINS):
        h.update(repr(sources.PINS[k]).encode())
    return h.hexdigest()


def on_white(rgba):
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3].astype(np.float32) * a + 255.0 * (1 - a) + 0.5).astype(np.uint8)


# ---------------------------------------------------------------- splits

def split_objects(objects):
    """Per category with at least two files: about 30% of its files (at
    least one) to evaluation, the rest (at least one) to training, by the
    hash of the file. Categories with one file are left out of the scenes,
    so that every scene category is shared by both roles."""
    by = {}
    for o in objects:
        if o.get("category"):
            by.setdefault(o["category"], []).append(o)
    train, evalp = {}, {}
    for c, files in sorted(by.items()):
        if len({f["file"] for f in files}) < 2:
            continue
        files = sorted(files, key=lambda f: (heldout.bucket("object:" + f["file"]), f["file"]))
        n_eval = min(len(files) - 1, max(1, int(round(EVAL_OBJECT_SHARE * len(files)))))
        evalp[c], train[c] = files[:n_eval], files[n_eval:]
    return train, evalp


def split_backgrounds(bgs):
    bgs = sorted(bgs, key=lambda b: (heldout.bucket("background:" + b["file"]), b["file"]))
    n_eval = max(1, int(round(0.3 * len(bgs))))
    return bgs[n_eval:], bgs[:n_eval]


# ---------------------------------------------------------------- sets

def drop_identical(items, load):
    """Leaves out every picture whose pixels equal another file's (kgeography
    ships Kherson's and Rivne's flags as one image): it cannot be told which
    name is right, and one picture in two files could cross the train/eval
    line. Returns the kept items and the number left out."""
    by = {}
    for it in items:
        px = load(it)
        by.setdefault(store.pixel_hash(px) if px is not None else None, []).append(it)
    dup = {id(it) for k, v in by.items() if k is not None and len(v) > 1 for it in v}
    return [it for it in items if id(it) not in dup], len(dup)


def build_captions(out, seed, prof, trees, wn, emoji, stamps, renderer, flags):
    if prof["flags"] is not None:
        r = rng_for(seed, "flags")
        flags = [flags[i] for i in sorted(r.choice(len(flags), size=min(prof["flags"], len(flags)), replace=False))]
    ems = emoji
    if prof["emoji"] is not None:
        # the objects the scenes use first, then others
        r = rng_for(seed, "emoji")
        ems = [ems[i] for i in sorted(r.choice(len(ems), size=min(prof["emoji"], len(ems)), replace=False))]
    sts = stamps if prof["stamps"] is None else stamps[:prof["stamps"]]
    w = store.SetWriter(os.path.join(out, "captions.h5"), "captions", seed)
    recs = []
    prog = Progress("captions", len(flags) + len(ems) + len(sts))
    for f in flags:
        rgb = np.asarray(pictures.load_rgba(f["path"]))
        rgb = on_white(rgb)
        key = "country:" + f["name"]
        iid = "flag:" + f["file"].split("flags/", 1)[1]
        w.add(iid, rgb, "kgeography-data:/" + f["file"])
        recs.append({"id": iid, "image": iid, "kind": "flag", "name": f["name"], "capital": f["capital"],
                     "country": f["country"], "within": f.get("within"), "within_all": f.get("within_all"),
                     "caption": "The flag of %s." % f["name"], "file": f["file"],
                     "key": key, "split": "eval" if heldout.heldout(key) else "train"})
        prog.step()
    for e in ems:
        rgba = renderer.rgba(e["text"])
        if rgba is None:
            prog.step()
            continue
        rgb = on_white(rgba)
        iid = "emoji:" + "_".join(e["cps"])
        w.add(iid, rgb, "fonts-noto-color-emoji:/" + e["file"])
        colour = compose.dominant_colour(rgba[..., :3][rgba[..., 3] >= 128])
        recs.append({"id": iid, "image": iid, "kind": "emoji", "name": e["name"], "category": e["category"],
                     "colour": colour, "caption": e["name"][0].upper() + e["name"][1:] + ".", "file": e["file"],
                     "split": e["role"]})
        prog.step()
    for s in sts:
        rgba = pictures.load_rgba(s["path"])
        rgb = on_white(rgba)
        iid = "stamp:" + s["file"].split("stamps/", 1)[1]
        w.add(iid, rgb, "tuxpaint-stamps-default:/" + s["file"])
        colour = compose.dominant_colour(rgba[..., :3][rgba[..., 3] >= 128])
        recs.append({"id": iid, "image": iid, "kind": "stamp", "name": s["name"], "category": s["category"],
                     "colour": colour, "caption": s["caption"], "file": s["file"], "split": s["role"]})
        prog.step()
    n, nbytes = w.close()
    store.write_jsonl(os.path.join(out, "captions.jsonl"), recs)
    return recs, {"images": n, "pixel_bytes": nbytes}


def object_pool(emoji, stamps, renderer):
    objs = []
    for e in emoji:
        if e.get("category"):
            objs.append({"category": e["category"], "name": e["name"], "file": e["file"], "text": e["text"],
                         "kind": "emoji"})
    for s in stamps:
        if s.get("category"):
            objs.append({"category": s["category"], "name": s["name"], "file": s["file"], "path": s["path"],
                         "kind": "stamp"})
    return objs


def load_object_rgba(o, renderer, cache):
    if o["file"] not in cache:
        if o["kind"] == "emoji":
            cache[o["file"]] = renderer.rgba(o["text"])
        else:
            cache[o["file"]] = pictures.load_rgba(o["path"])
    return cache[o["file"]]


def build_scenes(out, seed, prof, trees, wn, pools, bgs, renderer):
    S = prof["side"]
    w = store.SetWriter(os.path.join(out, "scenes.h5"), "scenes", seed)
    recs, cache = [], {}
    total = 2 * 3 * prof["scenes"]
    prog = Progress("scenes", total)
    for role in ("train", "eval"):
        objs = pools[role]
        cats = sorted(objs)
        for split in ("small", "medium", "large"):
            made, attempt = 0, 0
            while made < prof["scenes"]:
                attempt += 1
                if attempt > 20 * prof["scenes"]:
                    raise sources.Error("scenes: cannot fill %s/%s (%d of %d)" % (role, split, made, prof["scenes"]))
                r = rng_for(seed, "scene", role, split, attempt)
                lo, hi = compose.OTHERS[split]
                k = 1 + int(r.integers(lo, hi + 1))
                chosen = []
                for c in r.permutation(len(cats)):
                    c = cats[int(c)]
                    if any(wn.synonyms(c, p) for p in chosen):
                        continue
                    chosen.append(c)
                    if len(chosen) == k:
                        break
                parts = []
                for c in chosen:
                    f = objs[c][int(r.integers(len(objs[c])))]
                    rgba = load_object_rgba(f, renderer, cache)
                    if rgba is None:
                        break
                    parts.append(dict(f, rgba=rgba))
                if len(parts) != len(chosen):
                    continue
                bg = bgs[role][int(r.integers(len(bgs[role])))]
                res = compose.compose(bg["rgb"], parts, split, S, r)
                if res is None:
                    continue
                rgb, truth = res
                ans = truth["objects"][0]
                if compose.split_of(ans["area_share"]) != split:
                    continue
                iid = "scene:%s:%s:%05d" % (role, split, made)
                w.add(iid, rgb, "generated:scene(%s)" % bg["file"])
                truth.update({"id": iid, "image": iid, "split": role, "size_split": split, "size": S,
                              "background_file": "python3-skimage:/" + bg["file"],
                              "pixel_sha256": store.pixel_hash(rgb)})
                recs.append(truth)
                made += 1
                prog.step()
    n, nbytes = w.close()
    store.write_jsonl(os.path.join(out, "scenes.jsonl"), recs)
    return recs, {"images": n, "pixel_bytes": nbytes}


def text_words(flags, emoji, seed):
    words = set()
    for f in flags:
        words.add(f["name"])
        if f["capital"]:
            words.add(f["capital"])
    for e in emoji:
        if len(e["name"]) <= 18:
            words.add(e["name"])
    r = rng_for(seed, "numbers")
    for _ in range(400):
        words.add(str(int(r.integers(0, 100000))))
        words.add("%d.%02d" % (int(r.integers(0, 1000)), int(r.integers(0, 100))))
    for y in range(1800, 2030):
        words.add(str(y))
    return sorted(w for w in words if all(ord(ch) < 0x250 for ch in w))


def build_text(out, seed, prof, trees, words, bgs):
    w = store.SetWriter(os.path.join(out, "text.h5"), "text", seed)
    recs = []
    by_role = {"train": [x for x in words if not heldout.heldout("text:" + x)],
               "eval": [x for x in words if heldout.heldout("text:" + x)]}
    n_train, n_eval = prof["text"]
    prog = Progress("text", n_train + n_eval)
    for role, n in (("train", n_train), ("eval", n_eval)):
        r = rng_for(seed, "text", role)
        pool = by_role[role]
        pick = r.choice(len(pool), size=min(n, len(pool)), replace=False)
        for j, k in enumerate(pick):
            word = pool[int(k)]
            bg = bgs[role][int(r.integers(len(bgs[role])))]
            rgb, meta = render.render_text(word, trees["fonts-dejavu-core"], r, bg["rgb"])
            iid = "text:%s:%05d" % (role, j)
            w.add(iid, rgb, "generated:text(fonts-dejavu-core:/%s/%s)" % (render.FONT_DIR, meta["font"]))
            meta.update({"id": iid, "image": iid, "split": role, "key": "text:" + word,
                         "background_file": "python3-skimage:/" + bg["file"] if meta["style"] == "photo" else None,
                         "pixel_sha256": store.pixel_hash(rgb)})
            recs.append(meta)
            prog.step()
    n, nbytes = w.close()
    store.write_jsonl(os.path.join(out, "text.jsonl"), recs)
    return recs, {"images": n, "pixel_bytes": nbytes, "words": len(words)}


def build_charts(out, seed, prof, trees):
    specs = render.chart_specs(trees["vega-datasets"])
    by_role = {"train": [s for s in specs if not heldout.heldout("chart:" + s[0])],
               "eval": [s for s in specs if heldout.heldout("chart:" + s[0])]}
    w = store.SetWriter(os.path.join(out, "charts.h5"), "charts", seed)
    recs = []
    n_train, n_eval = prof["charts"]
    prog = Progress("charts", n_train + n_eval)
    for role, n in (("train", n_train), ("eval", n_eval)):
        pool = by_role[role]
        j, used = 0, set()
        for attempt in range(20 * n):
            if j == n:
                break
            r = rng_for(seed, "chart", role, attempt)
            kind = ("bar", "line")[j % 2]  # as many bar charts as line charts
            kinds = [s for s in pool if s[1] == kind] or pool
            spec = kinds[int(r.integers(len(kinds)))]
            pts = render.select_points(spec, r)
            if not pts or (spec[0], tuple(p[0] for p in pts)) in used:
                continue
            used.add((spec[0], tuple(p[0] for p in pts)))
            annotate = bool(r.random() < 0.5)
            rgb = render.render_chart(spec, pts, r, annotate)
            iid = "chart:%s:%05d" % (role, j)
            w.add(iid, rgb, "generated:chart(vega-datasets:/data/%s)" % spec[5])
            recs.append({"id": iid, "image": iid, "split": role, "chart": spec[1], "key": "chart:" + spec[0],
                         "title": spec[2], "unit": spec[4], "table": spec[5], "points": [list(p) for p in pts],
                         "values_printed": annotate, "pixel_sha256": store.pixel_hash(rgb)})
            j += 1
            prog.step()
    nimg, nbytes = w.close()
    store.write_jsonl(os.path.join(out, "charts.jsonl"), recs)
    return recs, {"images": nimg, "pixel_bytes": nbytes, "chart_specs": len(specs)}


# ---------------------------------------------------------------- language-only

QUIZ_CAPITALS = ("africa", "america", "asia", "europe")
QUIZ_TEMPLATES = {  # quiz file: (question on field 0, answer field)
    "elements": ("What is the chemical symbol of %s?", 3, 0),
    "collectives": ("What is the collective noun for a group of %s?", 0, 1),
    "flowers": ("In the language of flowers, what does %s mean?", 0, 1),
    "latin": ("What does the Latin %s mean?", 0, 1),
    "greek": ("What does the Greek %s mean?", 0, 1),
    "pres": ("Who was the %s President of the United States?", 0, 1),
}
QUIZ_DIR = "usr/share/games/bsdgames/quiz"


def _quiz_clean(s):
    return None if any(c in s for c in "[]{}|\\") else s.strip()


def quiz_facts(tree):
    """(key, question, answer) from bsdgames' quiz files; the capitals are
    keyed by country, like the flags, so the partition treats both alike."""
    out = []
    for name in sorted(os.listdir(os.path.join(tree, QUIZ_DIR))):
        path = os.path.join(tree, QUIZ_DIR, name)
        if name not in QUIZ_CAPITALS and name not in QUIZ_TEMPLATES:
            continue
        with open(path, encoding="latin-1") as f:
            for line in f:
                p = line.rstrip("\n").split(":")
                if name in QUIZ_CAPITALS and len(p) == 2:
                    c, cap = _quiz_clean(p[0]), _quiz_clean(p[1])
                    if c and cap:
                        out.append(("country:" + c, "What is the capital of %s?" % c, cap))
                elif name in QUIZ_TEMPLATES:
                    q, qi, ai = QUIZ_TEMPLATES[name]
                    if len(p) > max(qi, ai):
                        a, b = _quiz_clean(p[qi]), _quiz_clean(p[ai])
                        if a and b:
                            if name == "pres":
                                a = {"1": "1st", "2": "2nd", "3": "3rd"}.get(a, a + "th")
                            out.append(("fact:%s:%s" % (name, p[qi]), q % a, b))
    return out


def wordnet_glosses(tree):
    """(key, question, answer) per concrete noun synset; the key is the id
    the wordnet-visual corpus gives the same synset (wn:n:OFFSET)."""
    out = []
    with open(os.path.join(tree, pictures.WORDNET, "data.noun"), encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            head, _, gloss = line.partition(" | ")
            p = head.split()
            if int(p[1]) not in pictures.WN_CONCRETE:
                continue
            word = p[4].replace("_", " ")
            if "(" in word:
                word = word.split("(")[0]
            definition = gloss.split(";")[0].strip()
            if definition:
                out.append(("wn:n:" + p[0], "What is %s?" % tasks.article(word), "%s is %s." % (
                    tasks.article(word)[0].upper() + tasks.article(word)[1:], definition)))
    return out


# ---------------------------------------------------------------- tasks

def number(items, prefix):
    for k, it in enumerate(items):
        it["id"] = "%s:%06d" % (prefix, k)
    return items


def build_tasks(out, seed, prof, wn, caps, scenes, texts, charts, language, categories):
    names = sorted({c["name"] for c in caps if c["kind"] in ("emoji", "stamp")})
    flags = [c for c in caps if c["kind"] == "flag"]
    countries = sorted({f["name"] for f in flags})
    capitals = sorted({f["capital"] for f in flags if f["capital"]})
    places = {k: sorted({f["within"] for f in flags if f.get("within") and f["country"] == k})
              for k in (True, False)}
    words = sorted({t["text"] for t in texts})
    vqa, existence, visual, align = [], [], [], []

    def gen(rec, set_name):
        r = rng_for(seed, "items", rec["id"])
        if set_name == "captions":
            if rec["kind"] == "flag":
                return tasks.knowledge_items(rec, r, countries, capitals, places)
            return tasks.general_items(rec, r, names, categories)
        if set_name == "scenes":
            return tasks.spatial_items(rec, r) + tasks.scene_colour_items(rec, r)
        if set_name == "text":
            return tasks.text_items(rec, r, words)
        return tasks.chart_items(rec, r)

    for set_name, recs in (("captions", caps), ("scenes", scenes), ("text", texts), ("charts", charts)):
        for rec in recs:
            qs = gen(rec, set_name)
            base = {"image": rec["image"], "image_set": set_name}
            if rec["split"] == "eval":
                for q in qs:
                    d = dict(base, **q)
                    if rec.get("key"):
                        d["key"] = rec["key"]
                    vqa.append(d)
                if set_name == "scenes":
                    r = rng_for(seed, "existence", rec["id"])
                    e = tasks.existence_item(rec, r, categories, wn)
                    if e:
                        existence.append(dict(base, **e))
                continue
            r = rng_for(seed, "conversation", rec["id"])
            if set_name == "scenes":
                e = tasks.existence_item(rec, r, categories, wn)
                qs = qs + ([e] if e else [])
            if qs:
                pick = [qs[int(i)] for i in sorted(r.choice(len(qs), size=min(3, len(qs)), replace=False))]
                visual.append(dict(base, conversations=tasks.conversation(r, pick),
                                   key=rec.get("key")))
            cap = rec.get("caption") or (tasks.caption_of_scene(rec) if set_name == "scenes" else None)
            if set_name == "text":
                cap = 'The text "%s" written in %s.' % (rec["text"], rec["font"].replace(".ttf", ""))
            if set_name == "charts":
                cap = "A %s chart: %s." % (rec["chart"], rec["title"])
            if cap:
                align.append(dict(base, conversations=[{"from": "human", "value": "<image>"},
                                                       {"from": "gpt", "value": cap}], caption=cap))
    # language-only: outside the held-out partition, as many as make LANGUAGE_SHARE
    lang = [x for x in language if not heldout.heldout(x[0])]
    want = int(round(len(visual) * LANGUAGE_SHARE / (1 - LANGUAGE_SHARE)))
    if prof["language"] is not None:
        want = min(want, prof["language"])
    r = rng_for(seed, "language")
    pick = sorted(r.choice(len(lang), size=min(want, len(lang)), replace=False)) if lang else []
    language_items = [{"key": lang[i][0], "conversations": [{"from": "human", "value": lang[i][1]},
                                                            {"from": "gpt", "value": lang[i][2]}]} for i in pick]
    # interleave by a seeded shuffle, so that a prefix keeps the proportions
    instruct = visual + language_items
    order = rng_for(seed, "instruct-order").permutation(len(instruct))
    instruct = [instruct[int(i)] for i in order]
    number(align, "align")
    number(instruct, "instruct")
    number(vqa, "vqa")
    number(existence, "existence")
    # ids first in every line
    fix = lambda xs: [dict([("id", x.pop("id"))] + list(x.items())) for x in xs]  # noqa: E731
    align, instruct, vqa, existence = fix(align), fix(instruct), fix(vqa), fix(existence)
    counts = {"align": store.write_jsonl(os.path.join(out, "align.jsonl"), align),
              "instruct": store.write_jsonl(os.path.join(out, "instruct.jsonl"), instruct),
              "instruct_visual": len(visual), "instruct_language": len(language_items),
              "vqa": store.write_jsonl(os.path.join(out, "vqa.jsonl"), vqa),
              "existence": store.write_jsonl(os.path.join(out, "existence.jsonl"), existence)}
    per = {}
    for q in vqa:
        k = "%s/%s" % (q["category"], q["answer_type"])
        per[k] = per.get(k, 0) + 1
    counts["vqa_by_category"] = dict(sorted(per.items()))
    counts["existence_by_split"] = {s: sum(1 for e in existence if e["split"] == s) for s in compose.SPLITS}
    return counts


# ---------------------------------------------------------------- build

SET_CARDS = {
    "captions": ("Real pictures with their own words: kgeography-data flags (\"The flag of X.\", with the "
                 "capital), fonts-noto-color-emoji glyphs named by unicode-data, and (full profile) "
                 "tuxpaint-stamps-default stamps with their English caption. Transparent pixels are "
                 "composited on white.", ["kgeography-data", "fonts-noto-color-emoji", "unicode-data",
                                          "tuxpaint-stamps-default", "wordnet-base"]),
    "scenes": ("Emoji and stamps (alpha) pasted onto crops of python3-skimage's photographs at drawn "
               "positions, sizes and overlaps; the truth per object: category, file, box, visible area "
               "share, depth (z) and overlaps.", ["python3-skimage", "fonts-noto-color-emoji", "unicode-data",
                                                   "tuxpaint-stamps-default", "wordnet-base"]),
    "text": ("Words and numbers (country, capital and emoji names; numbers, years) rendered with FreeType "
             "in the fonts-dejavu-core fonts, plain, inverse or over a lightened photograph.",
             ["fonts-dejavu-core", "kgeography-data", "unicode-data", "python3-skimage"]),
    "charts": ("Bar and line charts drawn by matplotlib (Agg) from vega-datasets tables (gapminder, barley, "
               "stocks, seattle-weather), the plotted values kept.", ["vega-datasets"]),
}


def build(out, profile, seed):
    out = os.path.realpath(out)  # data/ or data/images may be a link: commit beside the real folder
    prof = PROFILES[profile]
    pkg_profile = "full" if profile == "full" else "small"
    key = code_key(profile, seed)
    stamp = os.path.join(out, ".stamp")
    if os.path.exists(stamp) and open(stamp).read().strip() == key:
        log("%s is current (profile %s, seed %d)" % (out, profile, seed))
        return 0
    t0 = time.time()
    tmp = out.rstrip("/") + ".tmp-build"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    pkgs = list(sources.PROFILE_PKGS[pkg_profile])
    trees = pictures.fetch_trees(pkgs)
    wn = pictures.WordNet(trees["wordnet-base"])
    renderer = pictures.EmojiRenderer(trees["fonts-noto-color-emoji"])
    emoji = pictures.load_emoji(trees["unicode-data"], wn)
    stamps = pictures.load_stamps(trees["tuxpaint-stamps-default"], wn) if "tuxpaint-stamps-default" in trees else []
    if prof["stamps"] is not None:
        stamps = stamps[:prof["stamps"]]
    emoji, dup_emoji = drop_identical(emoji, lambda e: renderer.rgba(e["text"]))
    stamps, dup_stamps = drop_identical(stamps, lambda x: pictures.load_rgba(x["path"]))
    flags, dup_flags = drop_identical(pictures.load_flags(trees["kgeography-data"]),
                                      lambda f: pictures.load_rgba(f["path"]))
    log("left out as identical pictures: %d flags, %d emoji, %d stamps" % (dup_flags, dup_emoji, dup_stamps))
    pool_train, pool_eval = split_objects(pictures_objects := object_pool(emoji, stamps, renderer))
    eval_files = {f["file"] for fs in pool_eval.values() for f in fs}
    for x in emoji + stamps:
        x["role"] = "eval" if x["file"] in eval_files or (
            not x.get("category") and heldout.bucket("object:" + x["file"]) < 300) else "train"
    categories = sorted(pool_train)
    log("%d object categories shared by training and evaluation (%d files)" % (
        len(categories), len(pictures_objects)))
    bg_train, bg_eval = split_backgrounds(pictures.load_backgrounds(trees["python3-skimage"]))
    bgs = {"train": bg_train, "eval": bg_eval}
    flags_all = pictures.load_flags(trees["kgeography-data"])
    summary = {"profile": profile, "seed": seed, "heldout_permille": heldout.HELDOUT_PERMILLE,
               "language_share": LANGUAGE_SHARE, "sets": {},
               "categories": {c: {"train": [f["file"] for f in pool_train[c]],
                                  "eval": [f["file"] for f in pool_eval[c]]} for c in categories},
               "backgrounds": {"train": [b["file"] for b in bg_train], "eval": [b["file"] for b in bg_eval]}}
    caps, c1 = build_captions(tmp, seed, prof, trees, wn, emoji, stamps, renderer, flags)
    c1["identical_left_out"] = {"flags": dup_flags, "emoji": dup_emoji, "stamps": dup_stamps}
    scenes, c2 = build_scenes(tmp, seed, prof, trees, wn, {"train": pool_train, "eval": pool_eval}, bgs, renderer)
    words = text_words(flags_all, emoji, seed)
    texts, c3 = build_text(tmp, seed, prof, trees, words, bgs)
    charts, c4 = build_charts(tmp, seed, prof, trees)
    language = wordnet_glosses(trees["wordnet-base"]) + quiz_facts(trees["bsdgames"])
    counts = build_tasks(tmp, seed, prof, wn, caps, scenes, texts, charts, language, categories)
    for name, c, recs in (("captions", c1, caps), ("scenes", c2, scenes), ("text", c3, texts),
                          ("charts", c4, charts)):
        notes, pk = SET_CARDS[name]
        c = dict(c, train=sum(1 for x in recs if x["split"] == "train"),
                 eval=sum(1 for x in recs if x["split"] == "eval"))
        store.write_json(os.path.join(tmp, name + ".card.json"), {
            "set": name, "profile": profile, "seed": seed, "notes": notes, "counts": c,
            "background_for_alpha": "white (captions); the photograph (scenes)",
            "origin": [sources.card_origin(p) for p in pk if p in trees]})
        summary["sets"][name] = c
    summary["tasks"] = counts
    store.write_json(os.path.join(tmp, "summary.json"), summary)
    with open(os.path.join(tmp, ".stamp"), "w") as f:
        f.write(key + "\n")
    # commit: the old folder goes only once the new one is complete
    keep = []
    if os.path.isdir(out):  # nested profiles (data/images/small) survive a rebuild of the parent
        keep = [d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d)) and d != "sheets"]
        for d in keep:
            os.replace(os.path.join(out, d), os.path.join(tmp, d))
        shutil.rmtree(out)
    os.replace(tmp, out)
    log("built %s in %.0f s: %s" % (out, time.time() - t0, json.dumps(
        {k: v["images"] for k, v in summary["sets"].items()})))
    log("tasks: " + json.dumps(counts))
    return 0


# ---------------------------------------------------------------- check

def check(out):
    """Re-reads every set with the reader's checks and every task line's
    image reference; returns the problems found."""
    problems = []
    readers = {}
    for name in ("captions", "scenes", "text", "charts"):
        try:
            readers[name] = store.SetReader(os.path.join(out, name + ".h5"))
        except store.Error as e:
            problems.append(str(e))
    for name in ("captions", "scenes", "text", "charts", "align", "instruct", "vqa", "existence"):
        path = os.path.join(out, name + ".jsonl")
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                d = json.loads(line)
                s = d.get("image_set", name)
                if "image" in d and (s not in readers or d["image"] not in readers[s].index):
                    problems.append("%s:%d: image %r is not in %s.h5" % (path, n, d["image"], s))
    return problems


def main(argv):
    ap = argparse.ArgumentParser(prog="presight data images", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", default=None)
    b.add_argument("--profile", choices=sorted(PROFILES), default="full")
    b.add_argument("--seed", type=int, default=42)
    c = sub.add_parser("check")
    c.add_argument("dir")
    s = sub.add_parser("sheets")
    s.add_argument("dir")
    o = sub.add_parser("ocr")
    o.add_argument("dir")
    o.add_argument("--sample", type=int, default=200)
    o.add_argument("--min", type=float, default=0.95)
    i = sub.add_parser("import")
    i.add_argument("--format", choices=("llava", "bench"), required=True)
    i.add_argument("--input", required=True)
    i.add_argument("--images", required=True)
    i.add_argument("--out", required=True)
    i.add_argument("--set", required=True)
    i.add_argument("--max-bad", type=float, default=0.01,
                   help="fail when more than this share of lines (or, if >= 1, this many) is bad")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            out = a.out or os.path.join(sources.REPO, "data", "images", "" if a.profile == "full" else a.profile)
            return build(out.rstrip("/"), a.profile, a.seed)
        if a.cmd == "check":
            p = check(a.dir)
            for x in p[:50]:
                print(x, file=sys.stderr)
            log("%s: %d problems" % (a.dir, len(p)))
            return 1 if p else 0
        if a.cmd == "sheets":
            import sheets
            for path in sheets.all_sheets(a.dir):
                log("wrote " + path)
            return 0
        if a.cmd == "ocr":
            import sheets
            ok, n, bad = sheets.ocr_check(a.dir, a.sample)
            log("tesseract read back %d of %d words (%.1f%%)" % (ok, n, 100.0 * ok / max(n, 1)))
            for x in bad[:20]:
                log("  misread: %r as %r" % x)
            return 0 if ok >= a.min * n else 1
        if a.cmd == "import":
            import importer
            return importer.run(a)
    except (sources.Error, store.Error) as e:
        print("images: error: %s" % e, file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
