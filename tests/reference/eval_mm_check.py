#!/usr/bin/python3
"""eval_mm_check.py - presight eval of an adapted model (pictures) against PyTorch.

    /usr/bin/python3 tests/reference/eval_mm_check.py MODEL.h5 PREDICTIONS.jsonl FEATURES_DIR \
        --data A.jsonl,B.jsonl --hp vocab=..,...,in_dim=..,visual_tokens=.. [--mutate M]

For every VQA prediction that saw its picture (image_input true), independently of
presight's code:
  1. the prompt, rebuilt from the item's data line (question, choices) with the byte-level
     chat template of stages/chat_template.h as sft trains it (BOS, "USER: ", the picture,
     "\\n" + question + lettered options + the answer hint, "\\n", "ASSISTANT: "), must equal
     the recorded context_ids and image_at;
  2. the picture's features are read from FEATURES_DIR's *.h5 by id and resized to the
     visual tokens with F.interpolate (bilinear, align_corners=False), projected by LLaVA's
     mlp2x_gelu and spliced as rows of -1 (torch_reference.py's forward_contract, float64);
  3. each option letter's log-likelihood after the prompt must equal the recorded
     letter_loglikelihoods (|presight - torch| <= tol * (1 + |torch|)), and the greedy
     continuation (full recompute, no cache) must begin with the recorded output_ids, up to
     a near-tie (top-2 margin < 1e-4 at the first difference, counted and reported).
--mutate is a negative control (the check must then fail): splice_after puts the picture
one token later, other_picture uses the next item's picture, zero_picture zero features."""
import argparse
import glob
import json
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Transformer, expected_names, projector_of  # noqa: E402

BOS, EOT = 256, 257
torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a shared box
MUTATIONS = ["splice_after", "other_picture", "zero_picture"]
HINT = "Answer with the option's letter from the given choices directly."


def text_ids(s):
    return list(s.encode("utf-8"))


def prompt_of(rec, has_image):
    """Byte ids of sft's first human turn for this question, then the assistant header;
    returns (ids, image_at)."""
    opts = "".join(f"{chr(65 + i)}. {c}\n" for i, c in enumerate(rec["choices"]))
    question = f"{rec['question']}\n{opts}{HINT}"
    ids = [BOS] + text_ids("USER: ")
    at = len(ids) if has_image else -1
    ids += text_ids(("\n" if has_image else "") + question) + text_ids("\n") + text_ids("ASSISTANT: ")
    return ids, at


class Pictures:
    def __init__(self, folder, v):
        self.side = int(round(math.sqrt(v)))
        self.index = {}
        for p in sorted(glob.glob(os.path.join(folder, "*.h5"))):
            f = h5py.File(p, "r")
            for i, k in enumerate(f["ids"].asstr()[:]):
                assert k not in self.index, f"{k} in two files"
                self.index[k] = (f, i)

    def tokens(self, image):
        f, i = self.index[image]
        grid = f["features"][i].astype(np.float64)
        gh, gw = int(f.attrs["grid_h"]), int(f.attrs["grid_w"])
        x = torch.from_numpy(grid.reshape(gh, gw, -1)).permute(2, 0, 1)[None]
        y = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
        return y[0].permute(1, 2, 0).reshape(self.side * self.side, -1)


def logits_of(model, proj, ids, at, v, feats):
    tok = ids[:at] + [-1] * v + ids[at:]
    with torch.no_grad():
        emb = proj(feats) if feats is not None else None
        logits, _ = model.forward_contract(torch.tensor([tok]), emb)
    return logits[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("predictions")
    ap.add_argument("features")
    ap.add_argument("--data", required=True, help="the tasks' JSONL files, comma-separated (items by id)")
    ap.add_argument("--hp", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--mutate", choices=MUTATIONS)
    ap.add_argument("--controls", action="store_true",
                    help="check unmutated (must pass), then every mutation (each must fail), in one process")
    args = ap.parse_args()
    hp = {}
    for kv in args.hp.split(","):
        k, val = kv.split("=")
        hp[k] = float(val)
    for k in ("vocab", "dim", "layers", "heads", "kv_heads", "ffn_dim", "context", "tied_head", "in_dim", "visual_tokens"):
        hp[k] = int(hp[k])
    v = hp["visual_tokens"]
    dt = torch.float64
    with h5py.File(args.model, "r") as f:
        names = expected_names(hp) + [f"mm_projector.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")]
        weights = {n: f["model/" + n][()].astype(np.float64) for n in names}
    model = Transformer(hp, dt, None)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.from_numpy(weights[n]))
    proj = projector_of(hp, weights, dt, None)
    pics = Pictures(args.features, v)
    items = {}
    for path in args.data.split(","):
        for line in open(path):
            rec = json.loads(line)
            items[rec["id"]] = rec
    preds = [json.loads(l) for l in open(args.predictions)]
    preds = [p for p in preds if p.get("image_input") is True]
    if not args.controls:
        return check(model, proj, pics, items, preds, v, args.tol, args.mutate)
    if check(model, proj, pics, items, preds, v, args.tol, None):
        return 1
    for m in MUTATIONS:
        if check(model, proj, pics, items, preds, v, args.tol, m) != 1:
            print(f"FAIL: the check does not detect --mutate {m}")
            return 1
    print(f"PASS: and each of {', '.join(MUTATIONS)} fails (negative controls)")
    return 0


def check(model, proj, pics, items, preds, v, tol, mutate):
    worst, n, bad, ties = 0.0, 0, [], 0
    for k, pr in enumerate(preds):
        rec = items[pr["id"]]
        ids, at = prompt_of(rec, True)
        if ids != pr["context_ids"] or at != pr["image_at"] or pr["visual_tokens"] != v:
            bad.append((pr["id"], "prompt", f"image_at {pr['image_at']} vs {at}; ids equal: {ids == pr['context_ids']}"))
            continue
        image = preds[(k + 1) % len(preds)]["image"] if mutate == "other_picture" else pr["image"]
        feats = pics.tokens(image)
        if mutate == "zero_picture":
            feats = torch.zeros_like(feats)
        at_used = at + 1 if mutate == "splice_after" else at
        z = logits_of(model, proj, ids, at_used, v, feats)
        logp = F.log_softmax(z[-1], dim=-1)
        for c, got in enumerate(pr["letter_loglikelihoods"]):
            ref = float(logp[text_ids(chr(65 + c))[0]])
            err = abs(got - ref) / (1 + abs(ref))
            worst, n = max(worst, err), n + 1
            if err > tol:
                bad.append((pr["id"], f"letter {chr(65 + c)}", f"presight {got:.8f} torch {ref:.8f}"))
        # greedy, recomputed in full at every step (the mutations fail on the letters already)
        seq, out = list(ids), []
        for _ in range(0 if mutate else len(pr["output_ids"]) + 1):
            zz = logits_of(model, proj, seq, at_used, v, feats)[-1]
            top = torch.topk(zz, 2)
            t = int(top.indices[0])
            if len(out) < len(pr["output_ids"]) and t != pr["output_ids"][len(out)]:
                if float(top.values[0] - top.values[1]) < 1e-4:
                    ties += 1
                else:
                    bad.append((pr["id"], "greedy", f"token {len(out)}: presight {pr['output_ids'][len(out)]}, torch {t}"))
                break
            if len(out) == len(pr["output_ids"]):
                # presight stopped here: at EOT, or at eval.max_new_tokens (not checked)
                break
            out.append(t)
            seq.append(t)
    print(f"{len(preds)} items with pictures, {n} letter log-likelihoods compared; worst |presight - torch| / "
          f"(1 + |torch|) = {worst:.3e} (tol {tol:g}); greedy answers recomputed ({ties} near-ties)"
          + (f"; MUTATION {mutate}" if mutate else ""))
    for i, what, msg in bad[:5]:
        print(f"  {i} {what}: {msg}")
    if not preds:
        print("FAIL: no prediction with a picture")
        return 1
    print("FAIL" if bad else "PASS")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
