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
With --hf DIR the model is instead the Hugging Face export (presight export: config.json,
model.safetensors) run by HFLlama below, a plain transcription of transformers'
LlamaForCausalLM (rotate_half RoPE, repeat_kv, LlamaRMSNorm), reading nothing of presight's
but the export; --mutate interleaved (Meta's pair rotation on the exported weights) must fail.
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


def read_safetensors(path):
    """The format by its spec: u64 little-endian header length, JSON header, raw data."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", t
        a, b = t["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(raw[8 + n + a: 8 + n + b], dtype="<f4").reshape(t["shape"]).astype(np.float64))
    return out


class HFLlama(torch.nn.Module):
    """transformers' LlamaForCausalLM forward (modeling_llama.py), float64, no cache."""

    def __init__(self, cfg, w, mutate=None):
        super().__init__()
        self.c, self.w, self.mutate = cfg, w, mutate
        hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        self.hd = hd
        self.inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))

    def norm(self, x, weight):  # LlamaRMSNorm
        var = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(var + self.c["rms_norm_eps"]))

    def rope(self, x, pos):
        freqs = torch.outer(pos.to(torch.float64), self.inv_freq)
        if self.mutate == "interleaved":  # Meta's pairs (x[2i], x[2i+1]): wrong for HF weights
            xr = x.reshape(*x.shape[:-1], -1, 2)
            c, s = freqs.cos()[None, None], freqs.sin()[None, None]
            return torch.stack([xr[..., 0] * c - xr[..., 1] * s, xr[..., 0] * s + xr[..., 1] * c], -1).flatten(-2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        half = x.shape[-1] // 2
        rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # rotate_half
        return x * cos + rot * sin

    def forward(self, tokens):
        c, w = self.c, self.w
        b, t = tokens.shape
        nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], self.hd
        pos = torch.arange(t)
        h = w["model.embed_tokens.weight"][tokens]
        mask = torch.full((t, t), float("-inf"), dtype=torch.float64).triu(1)
        for l in range(c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            x = self.norm(h, w[p + "input_layernorm.weight"])
            q = (x @ w[p + "self_attn.q_proj.weight"].T).view(b, t, nh, hd).transpose(1, 2)
            k = (x @ w[p + "self_attn.k_proj.weight"].T).view(b, t, nkv, hd).transpose(1, 2)
            v = (x @ w[p + "self_attn.v_proj.weight"].T).view(b, t, nkv, hd).transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            k = k[:, :, None].expand(b, nkv, nh // nkv, t, hd).reshape(b, nh, t, hd)  # repeat_kv
            v = v[:, :, None].expand(b, nkv, nh // nkv, t, hd).reshape(b, nh, t, hd)
            att = torch.softmax(q @ k.transpose(2, 3) / hd ** 0.5 + mask, dim=-1) @ v
            h = h + att.transpose(1, 2).reshape(b, t, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
            x = self.norm(h, w[p + "post_attention_layernorm.weight"])
            gate, up = x @ w[p + "mlp.gate_proj.weight"].T, x @ w[p + "mlp.up_proj.weight"].T
            h = h + (F.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
        h = self.norm(h, w["model.norm.weight"])
        head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
        return h @ head.T


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
    ap.add_argument("--hf", help="score with this Hugging Face export instead (config.json, model.safetensors)")
    ap.add_argument("--hp", default="", help="vocab=..,dim=..,layers=..,heads=..,kv_heads=..,ffn_dim=..,context=..,rope_theta=..,norm_eps=..,tied_head=0|1")
    ap.add_argument("--prefix", type=int, required=True, help="the <|end_of_text|> id")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--mutate", choices=["rope_half", "interleaved"], default=None)
    args = ap.parse_args()
    if args.hf:
        cfg = json.load(open(os.path.join(args.hf, "config.json")))
        model = HFLlama(cfg, read_safetensors(os.path.join(args.hf, "model.safetensors")), args.mutate)
        return compare(model, cfg["max_position_embeddings"], args)
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
    return compare(model, hp["context"], args)


def compare(model, L, args):
    worst, n, bad = 0.0, 0, []
    with open(args.predictions) as fp:
        for line in fp:
            pr = json.loads(line)
            kind = pr["kind"]
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
