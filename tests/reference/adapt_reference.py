#!/usr/bin/env python3
"""One align or sft micro-batch of `presight adapt` against PyTorch.

Reads the stage's dump (PRESIGHT_ADAPT_DUMP=FILE: the micro-batch, the
projector's input, the weights before the step, its summed loss and the
trainable tensors' gradients) and, independently of presight:
  1. rebuilds the batch from the JSONL lines (the byte-level chat template of
     stages/chat_template.h, the <image> splice, LLaVA's shifted labels, next-fit
     packing with per-sample positions and ids) and requires it identical;
  2. reads the pictures' features from the features files and resizes them to
     the visual tokens with F.interpolate (bilinear, align_corners=False);
  3. runs projector + decoder in float64 PyTorch (torch_reference.py's
     Transformer.forward_contract), the summed cross-entropy over the targets
     divided by the global count, backward, and compares the loss and every
     trainable tensor's gradient (align: the projector only, the decoder must
     get none; sft: every tensor).
--mutate is a negative control: the check must then fail.
"""
import argparse
import json
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Transformer, expected_names, projector_of, read_hparams, rel_err  # noqa: E402

BOS, EOT = 256, 257


def text_ids(s):
    return list(s.encode("utf-8"))


def template(rec, plain, v, mutate):
    """ids (with -1 for picture rows) and labels (id or -1) of one line."""
    ids, lab = [], []

    def add(xs, train):
        ids.extend(xs)
        lab.extend(xs if train else [-1] * len(xs))

    turns = rec["conversations"]
    has_image = "image" in rec
    add([BOS], False)
    if plain:
        add([-1] * v, False)
        add(text_ids(turns[1]["value"]), True)
        add([EOT], True)
        return ids, lab
    for i, t in enumerate(turns):
        if t["from"] == "human":
            add(text_ids("USER: "), False)
            text = t["value"]
            if i == 0 and has_image and "<image>" in text:
                before, after = text.split("<image>", 1)
                add(text_ids(before), False)
                add([-1] * v, False)
                add(text_ids(after), mutate == "train_prompts")
            else:
                add(text_ids(text), mutate == "train_prompts")
            add(text_ids("\n"), False)
        else:
            add(text_ids("ASSISTANT: "), False)
            add(text_ids(t["value"]), True)
            add([EOT], True)
    return ids, lab


def build_batch(recs, plain, v, B, S, mutate):
    tok = np.zeros((B, S), np.int64)
    tgt = -np.ones((B, S), np.int64)
    pos = np.zeros((B, S), np.int64)
    sid = -np.ones((B, S), np.int64)
    row, used, nid = 0, 0, 0
    for rec in recs:
        ids, lab = template(rec, plain, v, mutate)
        n = min(len(ids), S)
        if used and used + n > S:
            row, used, nid = row + 1, 0, 0
        for j in range(n):
            tok[row, used + j] = ids[j]
            nxt = lab[j + 1] if j + 1 < n else -1
            tgt[row, used + j] = lab[j] if mutate == "no_shift" else nxt
            pos[row, used + j] = j
            sid[row, used + j] = nid
        used += n
        nid += 1
    return tok, tgt, pos, sid


def features_of(recs, feat_dir, v):
    side = int(round(math.sqrt(v)))
    out = []
    files = {}
    for rec in recs:
        if "image" not in rec:
            continue
        s = rec["image_set"]
        if s not in files:
            f = h5py.File(os.path.join(feat_dir, s + ".h5"), "r")
            files[s] = (f, {k: i for i, k in enumerate(f["ids"].asstr()[:])})
        f, index = files[s]
        grid = f["features"][index[rec["image"]]].astype(np.float64)  # [tokens, width]
        gh, gw = int(f.attrs["grid_h"]), int(f.attrs["grid_w"])
        x = torch.from_numpy(grid.reshape(gh, gw, -1)).permute(2, 0, 1)[None]
        y = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        out.append(y[0].permute(1, 2, 0).reshape(side * side, -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump")
    ap.add_argument("jsonl", help="the stage's adapt.data")
    ap.add_argument("features", help="the stage's adapt.features folder")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--mutate", choices=["no_shift", "train_prompts", "no_sample_mask", "mean_per_batch"])
    args = ap.parse_args()
    f = h5py.File(args.dump, "r")
    hp = read_hparams(f, ("in_dim", "visual_tokens"))
    v = hp["visual_tokens"]
    plain = bool(f["style_plain"][0])
    lines = [json.loads(l) for l in open(args.jsonl) if l.strip()]
    idx = f["lines"][()]
    recs = [lines[i] for i in idx if i >= 0]
    mine = {k: f[k][()] for k in ("tokens", "targets", "positions", "sample")}
    B, S = mine["tokens"].shape
    print(f"{args.dump}: {'align (plain)' if plain else 'chat'} micro-batch of {len(recs)} samples, "
          f"{B} x {S} rows, {v} visual tokens" + (f", MUTATION {args.mutate}" if args.mutate else ""))
    failures = []
    ref = dict(zip(("tokens", "targets", "positions", "sample"), build_batch(recs, plain, v, B, S, args.mutate)))
    for k in ref:
        if not np.array_equal(ref[k], mine[k]):
            bad = np.argwhere(ref[k] != mine[k])[0]
            failures.append(f"{k} differs first at row {tuple(bad)}: presight {mine[k][tuple(bad)]}, "
                            f"reference {ref[k][tuple(bad)]}")
    feats = features_of(recs, args.features, v)
    if feats.shape != f["features"].shape or np.abs(feats - f["features"][()]).max() > 1e-3 * max(1, np.abs(feats).max()):
        failures.append(f"features differ from the file's, resized ({feats.shape} vs {f['features'].shape})")
    # The model, float64.
    names = expected_names(hp) + [f"mm_projector.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")]
    weights = {n: f["model"][n][()] for n in names}
    dt = torch.float64
    model = Transformer(hp, dt, None)
    trained = {n[len("grad."):] for n in f.keys() if n.startswith("grad.")}
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.from_numpy(weights[n]).to(dt))
    for n, p in model.named_parameters():
        p.requires_grad_(n in trained)
    proj = projector_of(hp, weights, dt, None)
    for n, p in proj.named_parameters():
        p.requires_grad_("mm_projector." + n in trained)
    tok, tgt = torch.from_numpy(ref["tokens"]), torch.from_numpy(mine["targets"].astype(np.int64))
    pos, sid = torch.from_numpy(ref["positions"]), torch.from_numpy(ref["sample"])
    embeds = proj(torch.from_numpy(f["features"][()].astype(np.float64)))
    logits, _ = model.forward_contract(tok, embeds, pos, sid, "no_sample_mask" if args.mutate == "no_sample_mask" else None)
    loss_sum = F.cross_entropy(logits.reshape(-1, hp["vocab"]), tgt.reshape(-1), ignore_index=-1, reduction="sum")
    counted = float(f["counted"][0])
    divisor = float((tgt >= 0).sum()) if args.mutate == "mean_per_batch" else counted
    (loss_sum / divisor).backward()
    rows = []
    rel = abs(float(loss_sum) - float(f["loss_sum"][0])) / abs(float(loss_sum))
    rows.append(("loss_sum", rel))
    grads = dict(("mm_projector." + n, p) for n, p in proj.named_parameters())
    grads.update(model.named_parameters())
    for n in sorted(grads):
        p = grads[n]
        if n not in trained:
            if p.grad is not None:
                failures.append(f"{n} is frozen but got a gradient in PyTorch")
            continue
        r = rel_err(f["grad." + n][()].astype(np.float64), p.grad.numpy())[0]
        rows.append(("grad." + n, r))
    frozen = [n for n in names if n not in trained]
    print(f"  {len(trained)} trainable tensors compared, {len(frozen)} frozen")
    for k, r in rows:
        bad = not r <= args.tol
        if bad:
            failures.append(f"{k}: rel {r:.3e} (tol {args.tol:g})")
        print(f"  {k:<44} {r:9.2e}{'  <-- FAIL' if bad else ''}")
    if failures:
        print("FAIL: " + "; ".join(failures[:6]))
        return 1
    print(f"PASS: the adapt micro-batch (template, splice, targets, loss, gradients) agrees with PyTorch (rel <= {args.tol:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
