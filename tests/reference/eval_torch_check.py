#!/usr/bin/python3
"""eval_torch_check.py - presight eval's per-item log-likelihoods against PyTorch.

    /usr/bin/python3 tests/reference/eval_torch_check.py MODEL.h5 PREDICTIONS.jsonl \
        --hp vocab=512,dim=64,... --prefix EOT [--tol 1e-4] [--mutate rope_half]

Rebuilds the decoder with Meta's llama/model.py structure (torch_reference.py's
Transformer, float64), loads MODEL.h5's /model weights by their Meta names and
recomputes every prediction's numbers from the token ids it records, the way
lm-evaluation-harness does, written here from lm-eval's code and not from presight's:
  multiple choice / partial / loglikelihood: for each request, whole = (ctx + cont)
    [-(context + 1):], input = whole[:-1], the summed log_softmax of cont's tokens at the
    last len(cont) positions (TemplateLM._loglikelihood_tokens);
  rolling: lm_eval.utils.get_rolling_token_windows(doc, prefix_token=EOT,
    max_seq_len=context, context_len=1) + make_disjoint_window, each window scored the
    same way, summed over windows.
Pass: |presight - torch| <= tol * (1 + |torch|) for every request (float32 against the
float64 answer). --mutate rope_half (HF's rotate_half RoPE instead of Meta's interleaved
one) must fail: the negative control."""
import argparse
import json
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Transformer, expected_names  # noqa: E402


def rolling_windows(tokens, prefix, max_seq_len, context_len=1):
    """lm_eval.utils.get_rolling_token_windows, then make_disjoint_window."""
    out = []
    if not tokens:
        return out
    pred_len = max_seq_len - context_len + 1
    predicted = 0
    first_seq_len = min(max_seq_len, len(tokens))
    out.append(([prefix] + tokens[: first_seq_len - 1], tokens[:first_seq_len]))
    predicted += first_seq_len
    while predicted < len(tokens):
        window_pred_len = min(len(tokens) - predicted, pred_len)
        window_end = predicted + window_pred_len
        out.append((tokens[window_end - max_seq_len - 1: window_end - 1], tokens[window_end - window_pred_len: window_end]))
        predicted += window_pred_len
    disjoint = []
    for a, b in out:  # make_disjoint_window
        disjoint.append((a[: len(a) - (len(b) - 1)], b))
    return disjoint


def score(model, ctx, cont, max_len):
    whole = (list(ctx) + list(cont))[-(max_len + 1):]
    inp = torch.tensor([whole[:-1]])
    with torch.no_grad():
        logp = F.log_softmax(model(inp)[0], dim=-1)
    n = len(cont)
    pos = torch.arange(len(whole) - 1 - n, len(whole) - 1)
    return float(logp[pos, torch.tensor(cont)].sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("predictions")
    ap.add_argument("--hp", required=True, help="vocab=..,dim=..,layers=..,heads=..,kv_heads=..,ffn_dim=..,context=..,rope_theta=..,norm_eps=..,tied_head=0|1")
    ap.add_argument("--prefix", type=int, required=True, help="the <|end_of_text|> id")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--mutate", choices=["rope_half"], default=None)
    args = ap.parse_args()
    hp = {}
    for kv in args.hp.split(","):
        k, v = kv.split("=")
        hp[k] = float(v)
    for k in ("vocab", "dim", "layers", "heads", "kv_heads", "ffn_dim", "context", "tied_head"):
        hp[k] = int(hp[k])
    model = Transformer(hp, torch.float64, args.mutate)
    with h5py.File(args.model, "r") as f, torch.no_grad():
        params = dict(model.named_parameters())
        assert sorted(params) == sorted(expected_names(hp)), sorted(params)
        for name, p in params.items():
            p.copy_(torch.from_numpy(np.asarray(f["model/" + name], dtype=np.float64)))
    worst, n, bad = 0.0, 0, []
    with open(args.predictions) as fp:
        for line in fp:
            pr = json.loads(line)
            kind, L = pr["kind"], hp["context"]
            if kind == "rolling":
                doc = pr["continuation_ids"][0]
                ref = sum(score(model, a, b, L) for a, b in rolling_windows(doc, args.prefix, L))
                pairs = [(pr["loglikelihood"], ref)]
            elif kind in ("multiple_choice", "partial", "loglikelihood"):
                ctxs = pr.get("request_context_ids") or [pr["context_ids"]] * len(pr["continuation_ids"])
                pairs = [(a, score(model, c, cont, L))
                         for a, c, cont in zip(pr["loglikelihoods"], ctxs, pr["continuation_ids"])]
            else:
                continue
            for a, b in pairs:
                err = abs(a - b) / (1 + abs(b))
                n += 1
                worst = max(worst, err)
                if err > args.tol:
                    bad.append((pr["task"], pr["id"], a, b))
    print(f"{n} log-likelihoods compared; worst |presight - torch| / (1 + |torch|) = {worst:.3e} (tol {args.tol:g})")
    for t, i, a, b in bad[:5]:
        print(f"  {t} {i}: presight {a:.8f} torch {b:.8f}")
    if n == 0:
        print("FAIL: nothing to compare")
        return 1
    print("FAIL" if bad else "PASS")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
