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
Deterministic: the choices are drawn and shuffled by SHA-256 of the id. Files are written
as NAME.tmp and renamed.
"""
import argparse
import glob
import gzip
import hashlib
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "images"))
from heldout import heldout_document  # noqa: E402

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default="data/corpora")
    ap.add_argument("--out", default="data/eval-heldout")
    ap.add_argument("--mc-items", type=int, default=500)
    a = ap.parse_args()
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


if __name__ == "__main__":
    main()
