#!/usr/bin/python3
"""heldout_tasks.py - the study's built-in language tasks from the held-out partition.

    /usr/bin/python3 datasets/tools/heldout_tasks.py [--corpora data/corpora] [--out data/eval-heldout]

Reads the default corpora's WordNet and GCIDE parts (data/corpora/<source>/part-*.jsonl.gz)
and keeps exactly the documents ingest keeps out of the shards (datasets/images/heldout.py,
the rule of datasets/heldout.c), so no task item was ever pretrained on:
  OUT/heldout-wordnet.jsonl, heldout-gcide.jsonl   {"id", "text"}: rolling perplexity
                                                   (config/tasks/heldout-{wordnet,gcide}.cfg)
  OUT/wordnet-mc.jsonl   {"id", "gloss", "choices", "label"}: which word a held-out synset's
                         gloss defines; the distractors are the first lemmas of other
                         held-out synsets of the same part of speech (config/tasks/wordnet-mc.cfg)
  OUT/quiz-mc.jsonl      {"id", "file", "question", "choices", "label"}: the bsdgames quiz
                         facts the instruction data is made from (datasets/images/images.py
                         quiz_facts: capitals keyed country:NAME, the rest fact:FILE:ITEM),
                         only those whose key is held out, so no instruction line taught
                         them; the distractors are other answers of the same quiz file
                         (the four capitals files count as one) (config/tasks/quiz-mc.cfg)
  OUT/gbrainy-mc.jsonl   {"id", "type", "question", "choices", "label"}: gbrainy's verbal
                         analogies (verbal_analogies.xml), all of them: gbrainy is neither a
                         pretraining corpus (datasets/corpora/sources.tsv) nor instruction
                         data. Its own 4 options where it has them; an open analogy
                         (PairOfWordsCompare) gets its first accepted answer and the first
                         answers of 3 other open analogies (config/tasks/gbrainy-mc.cfg)
The two packages come from Debian, SHA-256 pinned (bsdgames in datasets/images/sources.py,
gbrainy below; apt-get download, unpacked, not installed). Deterministic: the choices are
drawn and shuffled by SHA-256 of the id. Files are written as NAME.tmp and renamed.
--fetch only fetches the two packages.
"""
import argparse
import glob
import gzip
import hashlib
import json
import os
import re
import sys

import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "images"))
from heldout import heldout_document  # noqa: E402
import sources  # noqa: E402

GBRAINY_XML = "usr/share/games/gbrainy/verbal_analogies.xml"
# gbrainy beside the image sets' pins (sources.PINS has bsdgames), kept here: a pin there
# would change the image builds' stamp and rebuild them.
sources.PINS.setdefault("gbrainy", ("deb", "1:2.4.6-1", "gbrainy_1%3a2.4.6-1_amd64.deb",
                                    "a65e83ee929f07b0df9cc9aabb9b5341fad149c43fe111fca4c729afdb024417",
                                    "GPL-2.0-or-later (verbal analogies)"))

WN = re.compile(r"^(?P<lemmas>[^()]+?) \((?P<pos>noun|verb|adjective|adverb|adjective satellite)\): (?P<gloss>.+)$", re.S)


def docs(corpora, source):
    for part in sorted(glob.glob(os.path.join(corpora, source, "part-*.jsonl.gz"))):
        with gzip.open(part, "rt", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                if heldout_document(d["id"]):
                    yield d


def h(key, salt):
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big")


def write(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    print(f"{path}: {len(rows)} lines")


def choose(key, gold, pool, n=3):
    """gold and n distractors from pool (distinct, none equal to gold, case-insensitive),
    drawn and shuffled by SHA-256 of key; None when the pool is too small."""
    taken = {gold.lower()}
    picked = []
    for w in sorted(set(pool), key=lambda w: h(key + "|" + w, "distractor")):
        if w.lower() not in taken:
            taken.add(w.lower())
            picked.append(w)
        if len(picked) == n:
            break
    if len(picked) < n:
        return None
    choices = sorted([gold] + picked, key=lambda w: h(key + "|" + w, "shuffle"))
    return choices, choices.index(gold)


def quiz_items(tree):
    import images  # the instruction data's quiz facts and their keys (numpy, imported late)
    facts = images.quiz_facts(tree)
    group = {}
    for key, q, a in facts:
        g = "capital" if key.startswith("country:") else key.split(":")[1]
        group.setdefault(g, []).append(a)
    items = []
    for key, q, a in facts:
        if not heldout_document(key):
            continue
        g = "capital" if key.startswith("country:") else key.split(":")[1]
        c = choose(key, a, group[g])
        if c:
            items.append({"id": key, "file": g, "question": q, "choices": c[0], "label": c[1]})
    return sorted(items, key=lambda it: h(it["id"], "order"))


def gbrainy_items(tree):
    root = ET.parse(os.path.join(tree, GBRAINY_XML)).getroot()
    rows, open_answers = [], []
    for k, a in enumerate(root.findall("analogy")):
        q = a.find("_question")
        kind = q.get("type")
        answers = [(x.text.strip(), x.get("correct") == "yes") for x in a.findall("_answer")]
        if kind == "MultipleOptions":
            question = q.text.strip()
        else:  # "car / garage | plane": car is to garage as plane is to ?
            pair, _, third = q.text.partition("|")
            x, _, y = pair.partition("/")
            question = "'%s' is to '%s' as '%s' is to what?" % (x.strip(), y.strip(), third.strip())
        if kind == "PairOfWordsCompare":
            accepted = [w.strip() for w in answers[0][0].split("|")]
            open_answers.append(accepted[0])
            answers = accepted
        rows.append(("gbrainy:analogy:%03d" % k, kind, question, answers))
    items = []
    for key, kind, question, answers in rows:
        if kind == "PairOfWordsCompare":
            pool = [w for w in open_answers if w.lower() not in {x.lower() for x in answers}]
            c = choose(key, answers[0], pool)
        else:
            gold = [w for w, ok in answers if ok]
            if len(gold) != 1:
                sys.exit(f"heldout_tasks: {GBRAINY_XML}: {key} has {len(gold)} correct answers")
            c = choose(key, gold[0], [w for w, ok in answers if not ok], n=len(answers) - 1)
        if c:
            items.append({"id": key, "type": kind, "question": question, "choices": c[0], "label": c[1]})
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default="data/corpora")
    ap.add_argument("--out", default="data/eval-heldout")
    ap.add_argument("--mc-items", type=int, default=500)
    ap.add_argument("--fetch", action="store_true", help="only fetch the bsdgames and gbrainy packages")
    a = ap.parse_args()
    try:
        quiz_tree, gbrainy_tree = sources.fetch("bsdgames"), sources.fetch("gbrainy")
    except sources.Error as e:
        sys.exit(f"heldout_tasks: {e}")
    if a.fetch:
        return
    os.makedirs(a.out, exist_ok=True)
    wn = list(docs(a.corpora, "wordnet-visual"))
    gc = list(docs(a.corpora, "gcide"))
    if not wn or not gc:
        sys.exit(f"heldout_tasks: no held-out documents under {a.corpora} (make corpora first)")
    write(os.path.join(a.out, "heldout-wordnet.jsonl"), [{"id": d["id"], "text": d["text"]} for d in wn])
    write(os.path.join(a.out, "heldout-gcide.jsonl"), [{"id": d["id"], "text": d["text"]} for d in gc])
    synsets = []
    for d in wn:
        m = WN.match(d["text"])
        if m:
            lemma = m.group("lemmas").split(", ")[0].strip()
            synsets.append((d["id"], m.group("pos"), lemma, m.group("gloss").strip()))
    by_pos = {}
    for s in synsets:
        by_pos.setdefault(s[1], []).append(s)
    items = []
    for sid, pos, lemma, gloss in sorted(synsets, key=lambda s: h(s[0], "order"))[: a.mc_items]:
        pool = [s[2] for s in by_pos[pos] if s[2].lower() != lemma.lower() and s[2].lower() not in gloss.lower()]
        pool = sorted(set(pool), key=lambda w: h(sid + "|" + w, "distractor"))[:3]
        if len(pool) < 3:
            continue
        choices = sorted([lemma] + pool, key=lambda w: h(sid + "|" + w, "shuffle"))
        items.append({"id": sid, "pos": pos, "gloss": gloss, "choices": choices, "label": choices.index(lemma)})
    write(os.path.join(a.out, "wordnet-mc.jsonl"), items)
    write(os.path.join(a.out, "quiz-mc.jsonl"), quiz_items(quiz_tree))
    write(os.path.join(a.out, "gbrainy-mc.jsonl"), gbrainy_items(gbrainy_tree))


if __name__ == "__main__":
    main()
