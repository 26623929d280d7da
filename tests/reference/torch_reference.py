#!/usr/bin/python3
"""torch_reference.py - presight against a reference no one here wrote.

    /usr/bin/python3 tests/reference/torch_reference.py OUT.h5 [--tol 1e-4] [--mutate KIND]

OUT.h5 comes from build/tests/tools/ref_dump (see tests/tools/ref_dump.c): the
initial weights (/model), the tokens and targets, and presight's logits, loss,
gradients (/grad) and the weights after one AdamW step (/after_step).

This script rebuilds the same Llama-3-style decoder in PyTorch, following
Meta's reference implementation (llama/model.py: RMSNorm, precompute_freqs_cis
and apply_rotary_emb with view_as_complex, i.e. the INTERLEAVED RoPE layout,
repeat_kv for grouped-query attention, SwiGLU w2(silu(w1 x) * w3 x)), loads the
identical weights by their Meta names, feeds the same tokens, and lets autograd
and torch.optim.AdamW do the rest.

What is compared to what
------------------------
The judge is PyTorch in float64: the float32 weights of the file are cast to
float64 exactly, so the float64 run is the exact answer for those weights up to
~1e-15. presight's float32 results (logits, loss, every gradient, the AdamW
step) are compared against it. The same model is also run by PyTorch in float32
and compared to the same float64 judge; that column ("torch f32") shows the
float32 noise floor any correct float32 implementation sits at, so a presight
error far above it points at a real difference rather than rounding.

Metrics, per tensor (a = presight, b = float64 reference):
  rel  = max|a - b| / max|b|                     the pass criterion: <= --tol (1e-4)
  elem = max_i |a_i - b_i| / (|b_i| + 1e-3 max|b|)
         elementwise relative error with an absolute floor at 1/1000 of the
         tensor's scale, so that values that are ~0 by cancellation do not make
         the ratio meaningless; printed, and must be <= --elem-tol (1e-2).
"rel" is a normwise (infinity-norm) error: it is what "agrees to 1e-4" means
for float32 arithmetic. "elem" catches a wrong small entry hidden under large
ones (a bug in one row, one head or one position) that rel, scaled by the
largest entry, would not see.

The AdamW step is checked twice:
  * "after_step/<t>": torch.optim.AdamW (same lr, betas, eps, weight_decay;
    weight_decay 0 for the norm weights through a second param group) applied to
    the float64 model whose .grad holds presight's own gradients; compared to
    presight's weights after its step, both as parameters and as the update
    (after - before) normwise, so that a wrong update cannot hide behind the
    much larger weights (the update's error is counted beyond one float32 ulp
    of the stored weight, the resolution a float32 weight has). Feeding the
    same gradients isolates the optimizer: on step 1 AdamW's update is
    g / (|g| + eps), which amplifies any gradient difference on entries with
    |g| ~ eps by 1/eps.
  * "step e2e": the same AdamW step on the reference's own float64 gradients
    (fully independent of presight). Printed for information with its worst
    update error; not a pass criterion because of the 1/eps amplification
    above on near-zero gradient entries.

--mutate KIND deliberately breaks the reference (negative control, to show the
test can fail): rope_half (HF rotate_half RoPE layout instead of Meta's
interleaved one), gqa_modulo (query head h on kv head h % kv_heads instead of
h // (heads / kv_heads)), decay_norms (weight decay on norm weights too).

Exit status: 0 all agree, 1 any disagreement (with a message naming the worst
tensor), 2 bad input.
"""

import argparse
import math
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------- the model
# Meta's llama/model.py, minus the KV cache and model parallelism; dtype-generic.


class RMSNorm(nn.Module):
    def __init__(self, dim, eps, dtype):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype))

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        return self._norm(x) * self.weight


def precompute_freqs_cis(dim, end, theta, dtype):
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=dtype)[: (dim // 2)] / dim))
    t = torch.arange(end, dtype=dtype)
    freqs = torch.outer(t, freqs)
    return torch.polar(torch.ones_like(freqs), freqs)  # complex64 / complex128


def reshape_for_broadcast(freqs_cis, x):
    ndim = x.ndim
    shape = [d if i == 1 or i == ndim - 1 else 1 for i, d in enumerate(x.shape)]
    return freqs_cis.view(*shape)


def apply_rotary_emb(xq, xk, freqs_cis):
    """Meta's interleaved layout: (x[2i], x[2i+1]) is one complex number."""
    xq_ = torch.view_as_complex(xq.reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.reshape(*xk.shape[:-1], -1, 2))
    freqs_cis = reshape_for_broadcast(freqs_cis, xq_)
    xq_out = torch.view_as_real(xq_ * freqs_cis).flatten(3)
    xk_out = torch.view_as_real(xk_ * freqs_cis).flatten(3)
    return xq_out.type_as(xq), xk_out.type_as(xk)


def apply_rotary_emb_half(xq, xk, freqs_cis):
    """MUTATION rope_half: Hugging Face's rotate_half layout (x[i], x[i + hd/2])."""
    cos = torch.cat([freqs_cis.real, freqs_cis.real], -1)[None, :, None, :]
    sin = torch.cat([freqs_cis.imag, freqs_cis.imag], -1)[None, :, None, :]

    def rot(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], -1)

    return xq * cos + rot(xq) * sin, xk * cos + rot(xk) * sin


def repeat_kv(x, n_rep, mutate):
    """torch.repeat_interleave(x, dim=2, repeats=n_rep): query head h uses kv head h // n_rep."""
    bs, slen, n_kv_heads, head_dim = x.shape
    if n_rep == 1:
        return x
    if mutate == "gqa_modulo":  # MUTATION: query head h on kv head h % n_kv_heads
        return x.repeat(1, 1, n_rep, 1)
    return x[:, :, :, None, :].expand(bs, slen, n_kv_heads, n_rep, head_dim).reshape(bs, slen, n_kv_heads * n_rep, head_dim)


class Attention(nn.Module):
    def __init__(self, hp, dtype, mutate):
        super().__init__()
        self.n_heads, self.n_kv_heads = hp["heads"], hp["kv_heads"]
        self.n_rep = self.n_heads // self.n_kv_heads
        self.head_dim = hp["dim"] // self.n_heads
        self.mutate = mutate
        d, hd = hp["dim"], self.head_dim
        self.wq = nn.Linear(d, self.n_heads * hd, bias=False, dtype=dtype)
        self.wk = nn.Linear(d, self.n_kv_heads * hd, bias=False, dtype=dtype)
        self.wv = nn.Linear(d, self.n_kv_heads * hd, bias=False, dtype=dtype)
        self.wo = nn.Linear(self.n_heads * hd, d, bias=False, dtype=dtype)

    def forward(self, x, freqs_cis, mask):
        bsz, seqlen, _ = x.shape
        xq, xk, xv = self.wq(x), self.wk(x), self.wv(x)
        xq = xq.view(bsz, seqlen, self.n_heads, self.head_dim)
        xk = xk.view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        xv = xv.view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        rope = apply_rotary_emb_half if self.mutate == "rope_half" else apply_rotary_emb
        xq, xk = rope(xq, xk, freqs_cis)
        keys = repeat_kv(xk, self.n_rep, self.mutate)
        values = repeat_kv(xv, self.n_rep, self.mutate)
        xq, keys, values = xq.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2)
        scores = torch.matmul(xq, keys.transpose(2, 3)) / math.sqrt(self.head_dim)
        scores = scores + mask
        scores = F.softmax(scores, dim=-1)
        output = torch.matmul(scores, values)
        output = output.transpose(1, 2).contiguous().view(bsz, seqlen, -1)
        return self.wo(output)


class FeedForward(nn.Module):
    def __init__(self, dim, hidden_dim, dtype):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False, dtype=dtype)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False, dtype=dtype)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False, dtype=dtype)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, hp, dtype, mutate):
        super().__init__()
        self.attention = Attention(hp, dtype, mutate)
        self.feed_forward = FeedForward(hp["dim"], hp["ffn_dim"], dtype)
        self.attention_norm = RMSNorm(hp["dim"], hp["norm_eps"], dtype)
        self.ffn_norm = RMSNorm(hp["dim"], hp["norm_eps"], dtype)

    def forward(self, x, freqs_cis, mask):
        h = x + self.attention(self.attention_norm(x), freqs_cis, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, hp, dtype, mutate=None):
        super().__init__()
        self.tied = bool(hp["tied_head"])
        self.tok_embeddings = nn.Embedding(hp["vocab"], hp["dim"], dtype=dtype)
        self.layers = nn.ModuleList(TransformerBlock(hp, dtype, mutate) for _ in range(hp["layers"]))
        self.norm = RMSNorm(hp["dim"], hp["norm_eps"], dtype)
        if not self.tied:
            self.output = nn.Linear(hp["dim"], hp["vocab"], bias=False, dtype=dtype)
        hd = hp["dim"] // hp["heads"]
        self.freqs_cis = precompute_freqs_cis(hd, hp["context"], hp["rope_theta"], dtype)

    def forward(self, tokens):
        _, seqlen = tokens.shape
        h = self.tok_embeddings(tokens)
        freqs_cis = self.freqs_cis[:seqlen]
        mask = torch.full((seqlen, seqlen), float("-inf"), dtype=h.dtype).triu(1)
        for layer in self.layers:
            h = layer(h, freqs_cis, mask)
        h = self.norm(h)
        head = self.tok_embeddings.weight if self.tied else self.output.weight
        return F.linear(h, head)


def expected_names(hp):
    names = ["tok_embeddings.weight"]
    for l in range(hp["layers"]):
        p = f"layers.{l}."
        names += [p + "attention_norm.weight"]
        names += [p + f"attention.{w}.weight" for w in ("wq", "wk", "wv", "wo")]
        names += [p + "ffn_norm.weight"]
        names += [p + f"feed_forward.{w}.weight" for w in ("w1", "w3", "w2")]
    names.append("norm.weight")
    if not hp["tied_head"]:
        names.append("output.weight")
    return names


# --------------------------------------------------------------- one step

def run(hp, weights, tokens, targets, dtype, mutate=None, grads_in=None):
    """Forward, loss, backward and one AdamW step in `dtype`.

    grads_in: when given (name -> array), the optimizer step uses these
    gradients instead of the model's own (the presight-gradient step)."""
    model = Transformer(hp, dtype, mutate)
    params = dict(model.named_parameters())
    if sorted(params) != sorted(expected_names(hp)):
        raise SystemExit(f"internal error: reference parameters {sorted(params)} differ from the Meta names")
    with torch.no_grad():
        for name, p in params.items():
            w = torch.from_numpy(weights[name]).to(dtype)
            if tuple(w.shape) != tuple(p.shape):
                raise SystemExit(f"bad input: /model/{name} has shape {tuple(w.shape)}, the reference expects {tuple(p.shape)}")
            p.copy_(w)

    tok = torch.from_numpy(tokens.astype(np.int64))
    tgt = torch.from_numpy(targets.astype(np.int64))
    logits = model(tok)
    loss = F.cross_entropy(logits.reshape(-1, hp["vocab"]), tgt.reshape(-1), ignore_index=-1)
    loss.backward()
    out = {
        "logits": logits.detach().numpy().astype(np.float64),
        "loss": float(loss.item()),
        "grad": {n: p.grad.detach().numpy().astype(np.float64).copy() for n, p in params.items()},
    }

    if grads_in is not None:
        for n, p in params.items():
            p.grad = torch.from_numpy(grads_in[n]).to(dtype)
    norms = [p for n, p in params.items() if n.endswith("norm.weight")]
    others = [p for n, p in params.items() if not n.endswith("norm.weight")]
    norm_decay = hp["weight_decay"] if mutate == "decay_norms" else 0.0
    opt = torch.optim.AdamW(
        [{"params": others, "weight_decay": hp["weight_decay"]}, {"params": norms, "weight_decay": norm_decay}],
        lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    opt.step()
    out["after_step"] = {n: p.detach().numpy().astype(np.float64).copy() for n, p in params.items()}
    return out


# ---------------------------------------------------------------- metrics

ELEM_FLOOR = 1e-3


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b))
    diff = np.abs(a - b)
    if scale == 0:
        return float(np.max(diff)) if diff.size else 0.0, float(np.max(diff)) if diff.size else 0.0
    rel = float(np.max(diff) / scale)
    elem = float(np.max(diff / (np.abs(b) + ELEM_FLOOR * scale)))
    return rel, elem


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("h5")
    ap.add_argument("--tol", type=float, default=1e-4, help="max normwise relative error (default 1e-4)")
    ap.add_argument("--elem-tol", type=float, default=1e-2, help="max elementwise relative error with floor (default 1e-2)")
    ap.add_argument("--mutate", choices=["rope_half", "gqa_modulo", "decay_norms"], default=None)
    ap.add_argument("--quiet", action="store_true", help="print only the worst rows and the verdict")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    try:
        f = h5py.File(args.h5, "r")
    except OSError as e:
        print(f"bad input: cannot open {args.h5}: {e}")
        return 2
    with f:
        try:
            hp = {k[len("hparams."):]: float(f[k][0]) for k in f.keys() if k.startswith("hparams.")}
            for k in ("vocab", "dim", "layers", "heads", "kv_heads", "ffn_dim", "context", "tied_head"):
                hp[k] = int(hp[k])
            names = expected_names(hp)
            for group in ("model", "grad", "after_step"):
                have = set(f[group].keys())
                if have != set(names):
                    missing, extra = sorted(set(names) - have), sorted(have - set(names))
                    print(f"FAIL: /{group} tensor names differ from Meta's: missing {missing}, unexpected {extra}")
                    return 1
            weights = {n: f["model"][n][()] for n in names}
            p_grad = {n: f["grad"][n][()].astype(np.float64) for n in names}
            p_after = {n: f["after_step"][n][()].astype(np.float64) for n in names}
            tokens, targets = f["tokens"][()], f["targets"][()]
            p_logits, p_loss = f["logits"][()].astype(np.float64), float(f["loss"][0])
        except KeyError as e:
            print(f"bad input: {args.h5} lacks {e}")
            return 2

    for n in names:
        if weights[n].dtype != np.float32:
            print(f"bad input: /model/{n} is {weights[n].dtype}, expected float32")
            return 2
    tied = "tied" if hp["tied_head"] else "untied"
    print(f"{args.h5}: vocab {hp['vocab']}, dim {hp['dim']}, layers {hp['layers']}, heads {hp['heads']}, "
          f"kv_heads {hp['kv_heads']}, ffn {hp['ffn_dim']}, {tied} head, tokens {list(tokens.shape)}, "
          f"{int((targets >= 0).sum())}/{targets.size} targets counted"
          + (f", MUTATION {args.mutate}" if args.mutate else ""))

    ref = run(hp, weights, tokens, targets, torch.float64, args.mutate, grads_in=p_grad)
    e2e = run(hp, weights, tokens, targets, torch.float64, args.mutate)  # own gradients in the step
    t32 = run(hp, weights, tokens, targets, torch.float32, args.mutate)

    rows = []  # (name, rel, elem, torch-f32 rel, checked)

    def add(name, a, b, t, checked=True):
        rel, elem = rel_err(a, b)
        rows.append((name, rel, elem, rel_err(t, b)[0] if t is not None else float("nan"), checked))

    def add_update(name, after, ref_after, before):
        # The update (after - before) in units of the reference update, less one
        # float32 ulp of the stored weight: a float32 weight cannot hold its
        # update more exactly than that (norm weights sit at 1.0, where one ulp
        # is ~1e-7, i.e. 1e-4 of an lr = 1e-3 update).
        a, b = after - before, ref_after - before
        ulp = np.spacing(np.abs(ref_after).astype(np.float32)).astype(np.float64)
        diff = np.maximum(np.abs(a - b) - ulp, 0.0)
        scale = np.max(np.abs(b))
        rows.append((name, float(np.max(diff) / scale) if scale else float(np.max(diff)),
                     float(np.max(diff / (np.abs(b) + ELEM_FLOOR * scale))) if scale else float(np.max(diff)),
                     float("nan"), True))

    add("logits", p_logits, ref["logits"], t32["logits"])
    add("loss", p_loss, ref["loss"], t32["loss"])
    for n in names:
        add("grad/" + n, p_grad[n], ref["grad"][n], t32["grad"][n])
    w0 = {n: weights[n].astype(np.float64) for n in names}
    for n in names:
        add("after_step/" + n, p_after[n], ref["after_step"][n], None)
        add_update("update/" + n, p_after[n], ref["after_step"][n], w0[n])
    # End to end: presight's step against the step on the reference's own gradients.
    worst_e2e = max(((rel_err(p_after[n] - w0[n], e2e["after_step"][n] - w0[n])[0], n) for n in names))
    worst_e2e_t32 = max(((rel_err(t32["after_step"][n] - w0[n], e2e["after_step"][n] - w0[n])[0], n) for n in names))

    failures = [r for r in rows if r[4] and (not (r[1] <= args.tol) or not (r[2] <= args.elem_tol))]
    if not args.quiet:
        print(f"{'tensor':<52} {'rel':>9} {'elem':>9} {'torch f32':>9}")
        for name, rel, elem, t, _ in rows:
            flag = "  <-- FAIL" if not (rel <= args.tol and elem <= args.elem_tol) else ""
            print(f"{name:<52} {rel:9.2e} {elem:9.2e} {t:9.2e}{flag}")
    groups = {"logits/loss": lambda n: n in ("logits", "loss"), "grad": lambda n: n.startswith("grad/"),
              "after_step": lambda n: n.startswith("after_step/"), "update": lambda n: n.startswith("update/")}
    print("worst per kind (rel = max|a-b|/max|b|, elem = max |a-b|/(|b| + 1e-3 max|b|); a = presight, b = torch f64):")
    for kind, sel in groups.items():
        sub = [r for r in rows if sel(r[0])]
        wr = max(sub, key=lambda r: r[1])
        we = max(sub, key=lambda r: r[2])
        t = [r[3] for r in sub if not math.isnan(r[3])]
        tinfo = f"; torch f32 worst rel {max(t):.2e}" if t else ""
        print(f"  {kind:<12} rel {wr[1]:.2e} ({wr[0]})  elem {we[2]:.2e} ({we[0]}){tinfo}")
    print(f"  step e2e     update rel {worst_e2e[0]:.2e} ({worst_e2e[1]}) vs AdamW on torch's own f64 gradients "
          f"(torch f32: {worst_e2e_t32[0]:.2e}); information only")

    if failures:
        worst = max(failures, key=lambda r: max(r[1] / args.tol, r[2] / args.elem_tol))
        print(f"FAIL: {len(failures)} tensor(s) disagree with PyTorch; worst {worst[0]}: rel {worst[1]:.3e} "
              f"(tol {args.tol:g}), elem {worst[2]:.3e} (tol {args.elem_tol:g})")
        return 1
    print(f"PASS: logits, loss, {len(names)} gradients and the AdamW step agree with PyTorch "
          f"(rel <= {args.tol:g}, elem <= {args.elem_tol:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
