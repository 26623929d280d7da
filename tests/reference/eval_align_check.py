#!/usr/bin/python3
"""eval_align_check.py - presight eval's alignment score recomputed in PyTorch + numpy.

    /usr/bin/python3 tests/reference/eval_align_check.py MODEL.h5 CAPTIONS.jsonl FEATURES.h5 RESULTS.jsonl \
        --hp vocab=..,... [--k 20] [--limit N] [--mutate shuffle]

For a byte-level model (datasets/text.c's ids: a caption's UTF-8 bytes): each caption runs
alone through Meta's model in float64 (torch_reference.py's Transformer.forward_contract,
hidden states as Hugging Face's output_hidden_states: the embedding output, each block's,
the last after the final norm), mean-pooled over its tokens; each block's pooled vector
comes from FEATURES.h5's /pooled/<block> by /ids; both are prepared and aligned by
mknn_reference.py (the Platonic Representation code's definition in numpy). The best score
over (layer, block) must equal the "alignment" row of RESULTS.jsonl for that encoder to
within 1/n (one neighbour of one item: float32 against float64 features may swap a tie).
--mutate shuffle pairs the captions with the wrong pictures and must fail."""
import argparse
import json
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mknn_reference import align, prepare  # noqa: E402
from torch_reference import Transformer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    for a in ("model", "captions", "features", "results"):
        ap.add_argument(a)
    ap.add_argument("--hp", required=True)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--mutate", choices=["shuffle"], default=None)
    args = ap.parse_args()
    hp = {k: float(v) for k, v in (kv.split("=") for kv in args.hp.split(","))}
    for k in ("vocab", "dim", "layers", "heads", "kv_heads", "ffn_dim", "context", "tied_head"):
        hp[k] = int(hp[k])
    model = Transformer(hp, torch.float64)
    with h5py.File(args.model, "r") as f, torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(np.asarray(f["model/" + name], dtype=np.float64)))
    feats = h5py.File(args.features, "r")
    ids = [x.decode() if isinstance(x, bytes) else x for x in feats["ids"][:]]
    row = {x: i for i, x in enumerate(ids)}
    caps = [json.loads(l) for l in open(args.captions) if l.strip()]
    caps = [c for c in caps if c["image"] in row]
    if args.limit:
        caps = caps[: args.limit]
    llm = []
    with torch.no_grad():
        for c in caps:
            toks = list(c["caption"].encode("utf-8"))[: hp["context"]]
            _, hidden = model.forward_contract(torch.tensor([toks]))
            llm.append(np.stack([h[0].mean(0).numpy() for h in hidden]))
    llm = prepare(np.stack(llm), 0.95, False)
    rows = [row[c["image"]] for c in caps]
    if args.mutate == "shuffle":
        rows = rows[1:] + rows[:1]
    encoder = feats.attrs["encoder"]
    encoder = encoder.decode() if isinstance(encoder, bytes) else str(encoder)
    best = 0.0
    for block in feats["pooled"]:
        v = np.asarray(feats["pooled"][block], dtype=np.float32)[rows][:, None, :]
        s, _, _ = align(llm, prepare(v, 0.95, False), args.k)
        best = max(best, s)
    got = [json.loads(l) for l in open(args.results)]
    got = [r for r in got if r["task"] == "alignment" and r["subset"] == encoder]
    if not got:
        print(f"FAIL: no alignment row for {encoder} in {args.results}")
        return 1
    n = len(caps)
    diff = abs(got[0]["value"] - best)
    print(f"alignment with {encoder} over {n} captions: presight {got[0]['value']:.6f}, reference {best:.6f} "
          f"(|diff| {diff:.2e}, tol {1 / n:.2e})")
    ok = diff <= 1.0 / n
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
