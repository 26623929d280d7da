"""Real pictures from the pinned packages, with the words their packages give them.

  flags:       kgeography-data, every division with a <flag> in a .kgm map
               file: the division's name and capital (countries from the
               continent and world maps, regions from the country maps)
  emoji:       fonts-noto-color-emoji glyphs named by unicode-data's
               emoji-test.txt (fully-qualified, no skin-tone variants)
  stamps:      tuxpaint-stamps-default PNGs with their English caption (.txt)
  backgrounds: python3-skimage's sample photographs (no synthetic ones)

Every picture carries `file`, the package path it was read from (emoji: the
font and its code points), so that train and evaluation can be separated by
file. Objects (emoji, stamps) also carry a `category`, the head noun of
their name, when that noun is a concrete WordNet noun (an animal, artifact,
food, object or plant): two files with the same head noun ("red apple",
"green apple") are two pictures of one category.
"""
import glob
import os
import re
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import sources

KG = "usr/share/kgeography"
EMOJI_FONT = "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
EMOJI_TEST = "usr/share/unicode/emoji/emoji-test.txt"
STAMPS = "usr/share/tuxpaint/stamps"
SKIMAGE = "usr/lib/python3/dist-packages/skimage/data"
WORDNET = "usr/share/wordnet"
# The sample photographs of scikit-image (the synthetic patterns, palettes,
# text pages and the truncated JPEG test file are left out).
BACKGROUNDS = ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
               "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
               "moon.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg"]
EMOJI_GROUPS = ("Animals & Nature", "Food & Drink", "Travel & Places", "Activities", "Objects")
# Head nouns that name a part or an abstraction rather than the pictured thing.
NOT_CATEGORIES = {"face", "food", "light", "volume", "game", "suit", "construction", "office", "arrow",
                  "flag", "pick", "ice", "snow", "cream", "ribbon", "machine", "tray", "card", "stone"}
SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
WN_CONCRETE = {5, 6, 13, 17, 20}  # lexicographer files noun.animal, artifact, food, object, plant


def rel(tree, path):
    return os.path.relpath(path, tree)


# ---------------------------------------------------------------- WordNet

class WordNet:
    """Noun lemmas -> (lexicographer files, synsets): the concreteness test
    and the synonym test of the existence distractors."""

    def __init__(self, tree):
        self.lexfiles, self.synsets = {}, {}
        with open(os.path.join(tree, WORDNET, "data.noun"), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                p = line.split()
                lexfn, nwords = int(p[1]), int(p[3], 16)
                for i in range(nwords):
                    w = p[4 + 2 * i].lower().replace("_", " ")
                    self.lexfiles.setdefault(w, set()).add(lexfn)
                    self.synsets.setdefault(w, set()).add(p[0])

    def concrete(self, noun):
        return bool(self.lexfiles.get(noun, set()) & WN_CONCRETE)

    def synonyms(self, a, b):
        return a == b or bool(self.synsets.get(a, set()) & self.synsets.get(b, set()))


def head_noun(name, wn):
    words = [w for w in re.split(r"[^a-z]+", name.lower()) if w]
    if not words:
        return None
    h = words[-1]
    if h in NOT_CATEGORIES or len(h) < 3 or not wn.concrete(h):
        return None
    return h


# ---------------------------------------------------------------- flags

def load_flags(tree):
    """One entry per flag file: name, capital, and whether it is a country
    (named in a continent or world map) or a region."""
    continents = {"africa.kgm", "asia.kgm", "europe.kgm", "ncamerica.kgm", "southamerica.kgm",
                  "caribbean.kgm", "oceania.kgm", "world.kgm"}
    seen = {}
    for path in sorted(glob.glob(os.path.join(tree, KG, "*.kgm"))):
        base = os.path.basename(path)
        root = ET.parse(path).getroot()
        map_name = (root.findtext("name") or "").strip()
        for d in root.iter("division"):
            flag, name = d.findtext("flag"), d.findtext("name")
            if not flag or not name or d.findtext("ignore") == "yes":
                continue
            fpath = os.path.join(tree, KG, "flags", flag)
            if not os.path.exists(fpath):
                continue
            e = seen.setdefault(flag, {"file": rel(tree, fpath), "path": fpath, "name": name.strip(),
                                       "capital": (d.findtext("capital") or "").strip() or None,
                                       "country": False, "maps": []})
            e["maps"].append(base)
            if base in continents:
                e["country"] = True
            # where it lies: a continent for a country, the country for a region
            if base != "world.kgm" and map_name and (base in continents or not e["country"]):
                e.setdefault("within", map_name)
                e.setdefault("within_all", []).append(map_name)  # never a distractor
    return [seen[k] for k in sorted(seen)]


def load_rgba(path):
    im = Image.open(path)
    im.load()
    return np.asarray(im.convert("RGBA"))


# ---------------------------------------------------------------- emoji

def load_emoji(unicode_tree, wn):
    out, group, sub = [], None, None
    with open(os.path.join(unicode_tree, EMOJI_TEST), encoding="utf-8") as f:
        for line in f:
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                sub = line.split(":", 1)[1].strip()
            elif "; fully-qualified" in line and group in EMOJI_GROUPS:
                cps = line.split(";")[0].split()
                name = line.split("#", 1)[1].split(None, 2)[2].strip()
                if ":" in name or SKIN_TONES & set(cps):
                    continue
                out.append({"name": name, "group": group, "subgroup": sub, "cps": cps,
                            "text": "".join(chr(int(c, 16)) for c in cps),
                            "category": head_noun(name, wn),
                            "file": EMOJI_FONT + "#U+" + "_".join(cps)})
    return out


class EmojiRenderer:
    SIZE = 109  # the size of the font's bitmap strikes

    def __init__(self, font_tree):
        self.font = ImageFont.truetype(os.path.join(font_tree, EMOJI_FONT), self.SIZE)

    def rgba(self, text):
        im = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
        ImageDraw.Draw(im).text((8, 8), text, font=self.font, embedded_color=True)
        box = im.getbbox()
        if box is None:
            return None
        a = np.asarray(im.crop(box))
        return a if a[..., 3].max() > 0 else None


# ---------------------------------------------------------------- stamps

def load_stamps(tree, wn):
    out = []
    for path in sorted(glob.glob(os.path.join(tree, STAMPS, "**", "*.png"), recursive=True)):
        txt = path[:-4] + ".txt"
        if not os.path.exists(txt):
            continue
        with open(txt, encoding="utf-8", errors="replace") as f:
            caption = f.readline().strip()
        if not caption or "=" in caption.split(" ")[0]:
            continue
        base = os.path.basename(path)[:-4]
        out.append({"file": rel(tree, path), "path": path, "caption": caption,
                    "folder": rel(tree, path).split("/")[4] if len(rel(tree, path).split("/")) > 5 else "",
                    "name": re.sub(r"[_\-0-9]+", " ", base).strip(),
                    "category": head_noun(re.sub(r"[_\-0-9]+", " ", base), wn)})
    return out


# ---------------------------------------------------------------- backgrounds

def load_backgrounds(tree):
    out = []
    for name in BACKGROUNDS:
        path = os.path.join(tree, SKIMAGE, name)
        im = Image.open(path)
        im.load()
        out.append({"file": rel(tree, path), "path": path, "rgb": np.asarray(im.convert("RGB"))})
    return out


def fetch_trees(names):
    return {n: sources.fetch(n) for n in names}
