"""Questions and conversations derived from the ground truth (never typed).

Every generator takes one image's truth record and returns items
{question, choices (MC) or None (short answer), answer, category,
answer_type, ...}; the same generators make the evaluation items (on the
evaluation pictures) and the visual instructions (on the training pictures).
Categories are the study's four: General, Knowledge, OCR & Chart,
Vision-Centric.
"""
import re

from compose import SPLITS

LETTERS = "ABCD"
COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray"]


def mc(rng, answer, pool, n=4):
    """answer plus n-1 distinct distractors from pool, shuffled."""
    seen = {answer.lower()}
    cands = []
    for p in rng.permutation(len(pool)) if len(pool) else []:
        c = pool[int(p)]
        if c.lower() not in seen:
            seen.add(c.lower())
            cands.append(c)
        if len(cands) == n - 1:
            break
    if len(cands) < n - 1:
        return None, None
    choices = cands + [answer]
    order = list(rng.permutation(n))
    choices = [choices[i] for i in order]
    return choices, choices.index(answer)


def item(question, choices, idx, answer, category, kind, **extra):
    d = {"question": question, "choices": choices, "answer": answer,
         "answer_index": idx, "category": category,
         "answer_type": "multiple_choice" if choices else "short_answer", "kind": kind}
    d.update(extra)
    return d


def with_options(question, choices):
    return question + "\n" + "\n".join("%s. %s" % (LETTERS[i], c) for i, c in enumerate(choices)) + \
        "\nAnswer with the option's letter from the given choices directly."


def article(noun):
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


# ---------------------------------------------------------------- General

def general_items(rec, rng, name_pool, category_pool):
    out = []
    if rec.get("kind") in ("emoji", "stamp") and rec.get("category"):
        ch, i = mc(rng, rec["name"], [n for n in name_pool if not n.endswith(rec["category"])])
        if ch:
            out.append(item("What is shown in this image?", ch, i, rec["name"], "General", "what"))
        out.append(item("What kind of thing is shown in this image? Answer with one word.", None, None,
                        rec["category"], "General", "what-word"))
    if rec.get("colour") and rec.get("category"):
        ch, i = mc(rng, rec["colour"], COLOURS)
        if ch:
            out.append(item("What is the main colour of the %s?" % rec["category"], ch, i, rec["colour"],
                            "General", "colour"))
    return out


def scene_colour_items(rec, rng):
    out = []
    for o in rec["objects"]:
        if o["colour"] and o["visible_fraction"] > 0.8 and o["area_share"] > 0.03:
            ch, i = mc(rng, o["colour"], COLOURS)
            if ch:
                out.append(item("What is the main colour of the %s in the image?" % o["category"], ch, i,
                                o["colour"], "General", "colour"))
    return out[:1]


# ---------------------------------------------------------------- Knowledge

def knowledge_items(rec, rng, countries, capitals, places):
    out = []
    name = rec["name"]
    what = "country" if rec.get("country") else "country or region"
    ch, i = mc(rng, name, countries)
    if ch:
        out.append(item("Which %s's flag is this?" % what, ch, i, name, "Knowledge", "flag-country"))
    out.append(item("This is the flag of a %s. Which one? Answer with its name." % what, None, None, name,
                    "Knowledge", "flag-country"))
    if rec.get("within"):
        if rec.get("country"):
            q = "This is the flag of a country. On which continent or in which region of the world is it?"
        else:
            q = "This is the flag of a region. In which country (or larger area) is it?"
        ch, i = mc(rng, rec["within"], [p for p in places[bool(rec.get("country"))]
                                        if p not in rec.get("within_all", [])])
        if ch:
            out.append(item(q, ch, i, rec["within"], "Knowledge", "flag-place"))
    if rec.get("capital"):
        ch, i = mc(rng, rec["capital"], capitals)
        if ch:
            out.append(item("This is the flag of a %s. What is its capital?" % what, ch, i, rec["capital"],
                            "Knowledge", "flag-capital"))
        out.append(item("What is the capital of the %s whose flag this is? Answer with its name." % what,
                        None, None, rec["capital"], "Knowledge", "flag-capital"))
    return out


# ---------------------------------------------------------------- OCR & Chart

def text_items(rec, rng, words):
    w = rec["text"]
    same_len = [x for x in words if abs(len(x) - len(w)) <= 2 and x != w]
    out = [item("What is written in the image? Answer with the text exactly.", None, None, w, "OCR & Chart",
                "read")]
    ch, i = mc(rng, w, same_len or words)
    if ch:
        out.append(item("Which text appears in the image?", ch, i, w, "OCR & Chart", "read"))
    return out


def chart_items(rec, rng):
    labels = [p[0] for p in rec["points"]]
    vals = [p[1] for p in rec["points"]]
    out = []
    hi = labels[vals.index(max(vals))]
    lo = labels[vals.index(min(vals))]
    fmt = ["%g" % v for v in vals]
    if rec["chart"] == "bar":
        ch, i = mc(rng, hi, labels)
        if ch:
            out.append(item("Which bar is the highest?", ch, i, hi, "OCR & Chart", "chart-max"))
        ch, i = mc(rng, lo, labels)
        if ch:
            out.append(item("Which bar is the lowest?", ch, i, lo, "OCR & Chart", "chart-min"))
        k = int(rng.integers(len(labels)))
        ch, i = mc(rng, fmt[k], fmt)
        if ch:
            out.append(item("What is the value of %s?" % labels[k], ch, i, fmt[k], "OCR & Chart", "chart-value"))
    else:
        if len(set(vals)) == len(vals) or vals.count(max(vals)) == 1:
            ch, i = mc(rng, hi, labels)
            if ch:
                out.append(item("At which point on the x-axis is the line highest?", ch, i, hi, "OCR & Chart",
                                "chart-max"))
        k = int(rng.integers(len(labels)))
        spread = [f for f in fmt if abs(float(f) - vals[k]) > 0.05 * (max(vals) - min(vals) + 1e-9)]
        ch, i = mc(rng, fmt[k], spread)
        if ch:
            out.append(item("What is the value at %s?" % labels[k], ch, i, fmt[k], "OCR & Chart", "chart-value"))
    return out


# ---------------------------------------------------------------- Vision-Centric

def spatial_items(rec, rng):
    objs = rec["objects"]
    out = []
    S = rec["size"]
    for a in range(len(objs)):
        for b in range(a + 1, len(objs)):
            A, B = objs[a], objs[b]
            ax0, ay0, ax1, ay1 = A["box"]
            bx0, by0, bx1, by1 = B["box"]
            ca, cb = A["category"], B["category"]
            if ax1 <= bx0 or bx1 <= ax0:  # apart along x
                left = ca if ax1 <= bx0 else cb
                ch = ["left", "right"]
                ans = "left" if left == ca else "right"
                out.append(item("Is the %s to the left or to the right of the %s?" % (ca, cb), ch, ch.index(ans),
                                ans, "Vision-Centric", "left-right"))
            if ay1 <= by0 or by1 <= ay0:
                ans = "above" if ay1 <= by0 else "below"
                ch = ["above", "below"]
                out.append(item("Is the %s above or below the %s?" % (ca, cb), ch, ch.index(ans), ans,
                                "Vision-Centric", "above-below"))
            ra = A["pixels"] / float(B["pixels"])
            if ra >= 1.5 or ra <= 1 / 1.5:
                big = ca if ra > 1 else cb
                ch = [ca, cb]
                out.append(item("Which looks larger in the image, the %s or the %s?" % (ca, cb), ch, ch.index(big),
                                big, "Vision-Centric", "larger"))
    for ov in rec["overlaps"]:
        F, Bk = objs[ov["front"]], objs[ov["back"]]
        if ov["pixels"] >= 0.05 * min(F["pixels"], Bk["pixels"]):
            ch = [F["category"], Bk["category"]]
            ch = [ch[i] for i in rng.permutation(2)]
            out.append(item("Which is in front, the %s or the %s?" % (ch[0], ch[1]), ch, ch.index(F["category"]),
                            F["category"], "Vision-Centric", "front"))
    n = len(objs)
    counts = [str(x) for x in range(1, 7)]
    ch, i = mc(rng, str(n), counts)
    if ch:
        out.append(item("How many objects have been placed on the photograph?", ch, i, str(n), "Vision-Centric",
                        "count"))
    if len(out) > 4:
        keep = sorted(rng.choice(len(out), size=4, replace=False))
        out = [out[k] for k in keep]
    return out


# ---------------------------------------------------------------- existence

def existence_item(rec, rng, categories, wn):
    ans = rec["objects"][0]
    present = [o["category"] for o in rec["objects"]]
    pool = [c for c in categories if not any(wn.synonyms(c, p) for p in present)]
    ch, i = mc(rng, ans["category"], pool)
    if not ch:
        return None
    share = ans["area_share"]
    split = [s for s, (lo, hi) in SPLITS.items() if lo <= share < hi or (s == "large" and share >= 1.0)][0]
    return item("Which of these appears in the image?", ch, i, ans["category"], "Vision-Centric", "existence",
                area_share=share, split=split, present=present)


# ---------------------------------------------------------------- conversations

def conversation(rng, qas):
    """LLaVA's schema: the first human turn carries <image>."""
    conv = []
    for k, q in enumerate(qas):
        text = with_options(q["question"], q["choices"]) if q["choices"] and rng.random() < 0.5 else q["question"]
        if q["choices"] and "letter" in text:
            ans = LETTERS[q["answer_index"]]
        else:
            ans = q["answer"]
        conv.append({"from": "human", "value": ("<image>\n" if k == 0 else "") + text})
        conv.append({"from": "gpt", "value": ans})
    return conv


def caption_of_scene(rec):
    objs = sorted(rec["objects"], key=lambda o: o["centre"][0])
    names = [article(o["category"]) for o in objs]
    if len(names) == 1:
        s = names[0]
    else:
        s = ", ".join(names[:-1]) + " and " + names[-1]
    return "A photograph with %s on it, from left to right." % s if len(names) > 1 else \
        "A photograph with %s on it." % s


def clean_gloss(text):
    return re.sub(r"\s+", " ", text).strip()
