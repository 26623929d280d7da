"""Import of users' image data into the image-set file and a task JSONL.

Two formats:
  llava  LLaVA / Cambrian conversations: a JSON array or JSONL of
         {"id", "image": "relative/path.jpg", "conversations": [{"from":
         "human"|"gpt", "value"}, ...]} (an item without "image" is a
         language-only sample and is kept without one)
  bench  benchmark questions, JSONL: {"id", "image", "question", "choices"
         (list, or null for short answers), "answer", "category" (one of
         General, Knowledge, OCR & Chart, Vision-Centric), "answer_type"
         (multiple_choice | short_answer)}; other fields are kept
Images are PNG or JPEG files under --images, decoded to RGB at their size.
A line that is not valid JSON or misses a field, or whose image is missing
or unreadable, is reported as FILE:LINE with the reason, counted, and left
out; the import goes on. At the end the counts are printed and written to
NAME.card.json; more bad lines than --max-bad (a share of the lines when
< 1, a count otherwise) fails the import (exit 1) without replacing an
existing NAME.h5.
"""
import json
import os

import numpy as np

import store

CATEGORIES = ("General", "Knowledge", "OCR & Chart", "Vision-Centric")
ANSWER_TYPES = ("multiple_choice", "short_answer")
MAX_REPORTS = 100


def _lines(path):
    """(line number, parsed object or the error) for a JSON array or JSONL."""
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            text = f.read()
        except UnicodeDecodeError as e:
            yield 0, ValueError("not UTF-8 (%s)" % e)
            return
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            arr = json.loads(text)
        except json.JSONDecodeError as e:
            yield e.lineno, ValueError("not valid JSON: %s" % e.msg)
            return
        # line numbers of the array's elements: where each object starts
        dec, pos, n = json.JSONDecoder(), text.index("[") + 1, 0
        for obj in arr:
            while text[pos] in " \t\r\n,":
                pos += 1
            _, end = dec.raw_decode(text, pos)
            yield text.count("\n", 0, pos) + 1, obj
            pos = end
            n += 1
        return
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            yield n, ValueError("not valid JSON: %s" % e.msg)


def _check_llava(d):
    if not isinstance(d, dict):
        return "not a JSON object"
    if not isinstance(d.get("id"), (str, int)):
        return "no id"
    conv = d.get("conversations")
    if not isinstance(conv, list) or not conv:
        return "no conversations list"
    for k, t in enumerate(conv):
        if not isinstance(t, dict) or t.get("from") not in ("human", "gpt", "system") or \
                not isinstance(t.get("value"), str):
            return "conversations[%d] is not {from: human|gpt, value: string}" % k
    if "image" in d and not isinstance(d["image"], str):
        return "image is not a string path"
    if "image" in d and "<image>" not in conv[0]["value"]:
        return "an image item whose first turn has no <image>"
    return None


def _check_bench(d):
    if not isinstance(d, dict):
        return "not a JSON object"
    for k in ("id", "image", "question", "answer", "category", "answer_type"):
        if k not in d:
            return "no %s field" % k
    if not isinstance(d["question"], str) or not isinstance(d["image"], str):
        return "question and image must be strings"
    if d["category"] not in CATEGORIES:
        return "category %r is not one of %s" % (d["category"], ", ".join(CATEGORIES))
    if d["answer_type"] not in ANSWER_TYPES:
        return "answer_type %r is not one of %s" % (d["answer_type"], ", ".join(ANSWER_TYPES))
    ch = d.get("choices")
    if d["answer_type"] == "multiple_choice":
        if not isinstance(ch, list) or len(ch) < 2 or not all(isinstance(c, str) for c in ch):
            return "multiple_choice without a list of at least two string choices"
        if str(d["answer"]) not in ch and not (isinstance(d["answer"], str) and len(d["answer"]) == 1 and
                                              0 <= ord(d["answer"].upper()) - 65 < len(ch)):
            return "answer %r is neither a choice nor a choice letter" % (d["answer"],)
    return None


def _load_image(path):
    from PIL import Image
    with Image.open(path) as im:
        if im.format not in ("PNG", "JPEG"):
            raise ValueError("%s image, want PNG or JPEG" % im.format)
        im.load()
        return np.asarray(im.convert("RGB"))


def run(a):
    check = _check_llava if a.format == "llava" else _check_bench
    os.makedirs(a.out, exist_ok=True)
    h5 = os.path.join(a.out, a.set + ".h5")
    w = store.SetWriter(h5 + ".import", a.set, 0)
    items, bad, lines, reports = [], 0, 0, 0
    image_ids = {}
    ids = set()

    def report(n, why):
        nonlocal bad, reports
        bad += 1
        if reports < MAX_REPORTS:
            print("%s:%d: %s; skipped" % (a.input, n, why), flush=True)
        reports += 1

    try:
        for n, d in _lines(a.input):
            lines += 1
            if isinstance(d, Exception):
                report(n, str(d))
                continue
            why = check(d)
            if not why and str(d["id"]) in ids:
                why = "duplicate id %r" % (d["id"],)
            if why:
                report(n, why)
                continue
            d = dict(d, id=str(d["id"]))
            if "image" in d:
                rel_path = d["image"]
                path = os.path.normpath(os.path.join(a.images, rel_path))
                if rel_path not in image_ids:
                    if not os.path.isfile(path):
                        report(n, "image %s is missing" % path)
                        continue
                    try:
                        rgb = _load_image(path)
                    except Exception as e:  # noqa: BLE001 (any decoder failure is the file's)
                        report(n, "image %s is unreadable (%s)" % (path, e))
                        continue
                    iid = "%s:%s" % (a.set, rel_path)
                    w.add(iid, rgb, "import:" + os.path.abspath(path))
                    image_ids[rel_path] = iid
                d["image_file"] = rel_path
                d["image"] = image_ids[rel_path]
                d["image_set"] = a.set
            ids.add(d["id"])
            items.append(d)
    except OSError as e:
        print("%s: cannot read (%s)" % (a.input, e.strerror))
        w._raw.close()
        os.unlink(w._raw_path)
        return 1
    limit = a.max_bad if a.max_bad >= 1 else a.max_bad * max(lines, 1)
    summary = {"input": a.input, "format": a.format, "lines": lines, "imported": len(items), "bad": bad,
               "images": len(image_ids), "max_bad": a.max_bad}
    print("import %s: %d lines, %d imported, %d bad (%s), %d images" % (
        a.input, lines, len(items), bad, "limit %g" % limit, len(image_ids)), flush=True)
    if bad > limit or not items:
        print("import %s: failed: %s" % (a.input, "more bad lines than --max-bad" if items else "nothing to import"))
        w._raw.close()
        os.unlink(w._raw_path)
        return 1
    # Committed only now, the task lines and the card first as .tmp, then the pixels, then
    # the renames: a failed import (a full disk) leaves an older set and its lines in place.
    w.path = h5
    done = []
    try:
        done.append(store.write_jsonl(os.path.join(a.out, a.set + ".jsonl"), items, commit=False))
        done.append(store.write_json(os.path.join(a.out, a.set + ".card.json"), dict(summary, set=a.set), commit=False))
        w.close()
    except store.Error:
        for tmp in done:
            os.unlink(tmp)
        if not w._raw.closed:
            w.abandon()
        raise
    for tmp in done:
        os.replace(tmp, tmp[:-len(".tmp")])
    return 0
