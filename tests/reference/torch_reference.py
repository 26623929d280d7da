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

The model contract (--contract)
-------------------------------
    torch_reference.py --contract OUT.h5 [--mutate KIND]

OUT.h5 comes from build/tests/tools/ref_contract (see its header). The same
decoder, extended the way the adaptation and evaluation stages use it, with
LLaVA's projector in front (mm_projector = nn.Sequential(nn.Linear, nn.GELU(),
nn.Linear), the mlp2x_gelu of llava/model/multimodal_projector/builder.py):
  a. features -> projector -> embedding rows placed where the tokens are -1,
     two samples packed into one sequence (per-sample RoPE positions and a
     block-diagonal causal mask), padding rows; the decoder's parameters have
     requires_grad = False. Compared: logits, loss, the projector's output,
     the gradients of the projector's four tensors, of the embedding rows and
     of the features; every decoder parameter must have .grad None, and
     presight must have allocated no gradient for them.
  b. per-row log p(target) and each layer's hidden states mean-pooled per
     sequence (Hugging Face's output_hidden_states: the embedding output,
     every block's output, the last after the final norm) of a padded batch.
  c. greedy decoding: PyTorch decodes each prompt on its own, step by step,
     with Meta's KV cache (Attention.cache_k / cache_v, start_pos); presight's
     batched tokens must be the same and its logits agree at every step.
Contract mutations (negative controls): positions_global (positions 0..S-1
whatever the batch says), no_sample_mask (plain causal attention across
packed samples), gelu_tanh (the tanh approximation of GELU), cache_stale
(decode steps never enter the KV cache).

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
    if freqs_cis.ndim == 3:  # per-row positions: [batch, seq, hd / 2]
        return freqs_cis[:, :, None, :]
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

    def forward(self, x, freqs_cis, mask, start_pos=None):
        """start_pos: None (no cache), or Meta's KV-cache mode: this call's rows
        sit at start_pos.. and attend to the cached rows before them."""
        bsz, seqlen, _ = x.shape
        xq, xk, xv = self.wq(x), self.wk(x), self.wv(x)
        xq = xq.view(bsz, seqlen, self.n_heads, self.head_dim)
        xk = xk.view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        xv = xv.view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        rope = apply_rotary_emb_half if self.mutate == "rope_half" else apply_rotary_emb
        xq, xk = rope(xq, xk, freqs_cis)
        if start_pos is not None:  # llama/model.py: write the new rows, read all rows so far
            if not (self.mutate == "cache_stale" and seqlen == 1):  # MUTATION: steps never enter the cache
                self.cache_k[:bsz, start_pos:start_pos + seqlen] = xk
                self.cache_v[:bsz, start_pos:start_pos + seqlen] = xv
            xk = self.cache_k[:bsz, :start_pos + seqlen]
            xv = self.cache_v[:bsz, :start_pos + seqlen]
        keys = repeat_kv(xk, self.n_rep, self.mutate)
        values = repeat_kv(xv, self.n_rep, self.mutate)
        xq, keys, values = xq.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2)
        scores = torch.matmul(xq, keys.transpose(2, 3)) / math.sqrt(self.head_dim)
        if mask is not None:
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

    def forward(self, x, freqs_cis, mask, start_pos=None):
        h = x + self.attention(self.attention_norm(x), freqs_cis, mask, start_pos)
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

    def forward_contract(self, tokens, embeds=None, positions=None, sample=None, mutate=None):
        """The stages' batch: rows whose token is -1 take the next row of
        embeds (row-major order), positions [B, S] per row, sample ids [B, S]
        (a row attends to earlier rows with its id; -1 = padding, zero
        input). Returns logits and the hidden states (HF convention)."""
        bsz, seqlen = tokens.shape
        h = self.tok_embeddings(tokens.clamp(min=0))
        if embeds is not None:
            rows = tokens == -1
            if sample is not None:
                rows = rows & (sample >= 0)
            h = h.masked_scatter(rows[..., None], embeds.to(h.dtype))
        if sample is not None:
            h = h * (sample >= 0)[..., None].to(h.dtype)
        if positions is None or mutate == "positions_global":
            positions = torch.arange(seqlen)[None, :].expand(bsz, seqlen)
        freqs_cis = self.freqs_cis[positions]
        i, j = torch.arange(seqlen)[:, None], torch.arange(seqlen)[None, :]
        allowed = (j <= i)[None].expand(bsz, seqlen, seqlen)
        if sample is not None and mutate != "no_sample_mask":
            allowed = allowed & (sample[:, :, None] == sample[:, None, :])
        allowed = allowed | torch.eye(seqlen, dtype=torch.bool)[None]  # padding rows attend to themselves (not compared)
        mask = torch.zeros(bsz, 1, seqlen, seqlen, dtype=h.dtype).masked_fill(~allowed[:, None], float("-inf"))
        hidden = [h]
        for layer in self.layers:
            h = layer(h, freqs_cis, mask)
            hidden.append(h)
        h = self.norm(h)
        hidden[-1] = h
        head = self.tok_embeddings.weight if self.tied else self.output.weight
        return F.linear(h, head), hidden

    def greedy_cached(self, prompt, max_new, dtype):
        """Meta's generate(), one prompt, greedy: prefill with the cache, then
        one token per step at start_pos. Returns tokens and per-step logits."""
        total = len(prompt) + max_new
        for layer in self.layers:
            a = layer.attention
            a.cache_k = torch.zeros(1, total, a.n_kv_heads, a.head_dim, dtype=dtype)
            a.cache_v = torch.zeros(1, total, a.n_kv_heads, a.head_dim, dtype=dtype)
        head = self.tok_embeddings.weight if self.tied else self.output.weight
        tokens, logits, start, feed = [], [], 0, torch.tensor([prompt])
        for _ in range(max_new):
            seqlen = feed.shape[1]
            h = self.tok_embeddings(feed)
            mask = None
            if seqlen > 1:
                mask = torch.full((seqlen, seqlen), float("-inf"), dtype=dtype).triu(1)
            for layer in self.layers:
                h = layer(h, self.freqs_cis[start:start + seqlen], mask, start)
            out = F.linear(self.norm(h), head)[0, -1]
            logits.append(out)
            tokens.append(int(torch.argmax(out)))
            start += seqlen
            feed = torch.tensor([[tokens[-1]]])
        return tokens, torch.stack(logits)


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


# ------------------------------------------------------------ the contract

CONTRACT_MUTATIONS = ["positions_global", "no_sample_mask", "gelu_tanh", "cache_stale"]


def projector_of(hp, weights, dtype, mutate):
    """LLaVA's mlp2x_gelu: Linear(in_dim, dim), GELU, Linear(dim, dim); named mm_projector.{0,2}.{weight,bias}."""
    gelu = nn.GELU(approximate="tanh") if mutate == "gelu_tanh" else nn.GELU()
    proj = nn.Sequential(nn.Linear(hp["in_dim"], hp["dim"], dtype=dtype), gelu,
                         nn.Linear(hp["dim"], hp["dim"], dtype=dtype))
    with torch.no_grad():
        for name, p in proj.named_parameters():
            p.copy_(torch.from_numpy(weights["mm_projector." + name]).to(dtype))
    return proj


def contract_model(hp, weights, dtype, mutate):
    model = Transformer(hp, dtype, mutate)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(weights[name]).to(dtype))
            p.requires_grad_(False)  # the frozen decoder
    return model


def contract_run(hp, f, weights, dtype, mutate):
    """Parts a, b, c in `dtype`; returns name -> array."""
    model, proj = contract_model(hp, weights, dtype, mutate), projector_of(hp, weights, dtype, mutate)
    out = {}
    ints = lambda k: torch.from_numpy(f[k][()].astype(np.int64))
    # a: projector -> image rows -> packed, padded decoder; loss gradient into the projector.
    tok, tgt, pos, sid = ints("a.tokens"), ints("a.targets"), ints("a.positions"), ints("a.sample")
    feats = torch.from_numpy(f["a.features"][()]).to(dtype).requires_grad_(True)
    embeds = proj(feats)
    embeds.retain_grad()
    logits, _ = model.forward_contract(tok, embeds, pos, sid, mutate)
    loss = F.cross_entropy(logits.reshape(-1, hp["vocab"]), tgt.reshape(-1), ignore_index=-1)
    loss.backward()
    keep = (sid >= 0)[..., None].to(dtype)  # padding rows' logits are not part of the contract
    out["a.logits"] = (logits * keep).detach().numpy()
    out["a.loss"] = float(loss)
    out["a.embeds"] = embeds.detach().numpy()
    out["a.embeds_grad"] = embeds.grad.numpy()
    out["a.features_grad"] = feats.grad.numpy()
    for name, p in proj.named_parameters():
        out["a.grad.mm_projector." + name] = p.grad.numpy()
    out["decoder grads"] = [n for n, p in model.named_parameters() if p.grad is not None]
    # b: per-row log-probabilities and pooled hidden states of a padded batch.
    with torch.no_grad():
        tok, tgt, sid, grp = ints("b.tokens"), ints("b.targets"), ints("b.sample"), ints("b.pool_group")
        logits, hidden = model.forward_contract(tok, None, None, sid, mutate)
        logp = torch.log_softmax(logits, -1).gather(-1, tgt.clamp(min=0)[..., None])[..., 0]
        out["b.log_probs"] = (logp * (tgt >= 0)).numpy()
        pooled = []
        for g in range(tok.shape[0]):
            sel = (grp == g)
            pooled.append(torch.stack([h[sel].mean(0) for h in hidden]))
        out["b.hidden"] = torch.stack(pooled).numpy()
    # c: each prompt alone, step by step with Meta's KV cache.
    with torch.no_grad():
        prompts, plen = f["c.prompts"][()], f["c.prompt_len"][()]
        new = f["c.tokens"].shape[1]
        toks, logs = zip(*(model.greedy_cached([int(t) for t in prompts[b, :plen[b]]], new, dtype)
                           for b in range(prompts.shape[0])))
        out["c.tokens"] = np.array(toks)
        out["c.logits"] = torch.stack(logs).numpy()
    return out


INT_HPARAMS = ("vocab", "dim", "layers", "heads", "kv_heads", "ffn_dim", "context", "tied_head")


def open_h5(path):
    """The file, or None after saying why."""
    try:
        return h5py.File(path, "r")
    except OSError as e:
        print(f"bad input: cannot open {path}: {e}")
        return None


def read_hparams(f, extra_ints=()):
    hp = {k[len("hparams."):]: float(f[k][0]) for k in f.keys() if k.startswith("hparams.")}
    for k in INT_HPARAMS + tuple(extra_ints):
        hp[k] = int(hp[k])
    return hp


def check_contract(args):
    f = open_h5(args.h5)
    if f is None:
        return 2
    with f:
        try:
            hp = read_hparams(f, ("in_dim",))
            names = expected_names(hp) + [f"mm_projector.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")]
            if set(f["model"].keys()) != set(names):
                print(f"FAIL: /model tensor names {sorted(f['model'].keys())} differ from {names}")
                return 1
            weights = {n: f["model"][n][()] for n in names}
            ref = contract_run(hp, f, weights, torch.float64, args.mutate)
            # torch's own float32 column (the noise floor); not needed for a negative control
            t32 = ref if args.mutate else contract_run(hp, f, weights, torch.float32, args.mutate)
            mine = {k: f[k][()].astype(np.float64) for k in ref if k.startswith(("a.", "b.", "c.")) and k != "a.loss"}
            mine["a.loss"] = float(f["a.loss"][0])
            mine["c.tokens"] = f["c.tokens"][()].astype(np.int64)
            frozen_grads = int(f["a.frozen_grads"][0])
            mine["a.logits"] = mine["a.logits"] * (f["a.sample"][()] >= 0)[..., None]
        except KeyError as e:
            print(f"bad input: {args.h5} lacks {e}")
            return 2
    print(f"{args.h5}: contract check, vocab {hp['vocab']}, dim {hp['dim']}, layers {hp['layers']}, heads "
          f"{hp['heads']}/{hp['kv_heads']}, projector {hp['in_dim']} -> {hp['dim']}"
          + (f", MUTATION {args.mutate}" if args.mutate else ""))
    failures = []
    if ref["decoder grads"]:
        failures.append(f"the frozen decoder got gradients in PyTorch: {ref['decoder grads']}")
    if frozen_grads:
        failures.append(f"presight allocated gradients for {frozen_grads} frozen decoder units")
    # Greedy tokens: presight's (batched, cached) against PyTorch's (one prompt at a time, cached).
    same = np.array_equal(mine["c.tokens"], ref["c.tokens"])
    if not same:
        failures.append(f"greedy tokens differ: presight {mine['c.tokens'].tolist()}, torch {ref['c.tokens'].tolist()}")
    print(f"  greedy tokens {'identical' if same else 'DIFFER'}: {ref['c.tokens'].tolist()}")
    print(f"{'output':<40} {'rel':>9} {'elem':>9} {'torch f32':>9}")
    for k in sorted(k for k in ref if k.startswith(("a.", "b.", "c.")) and k != "c.tokens"):
        if k == "c.logits" and not same:
            continue
        rel, elem = rel_err(mine[k], ref[k])
        trel = rel_err(t32[k], ref[k])[0]
        bad = not (rel <= args.tol and elem <= args.elem_tol)
        print(f"{k:<40} {rel:9.2e} {elem:9.2e} {trel:9.2e}{'  <-- FAIL' if bad else ''}")
        if bad:
            failures.append(f"{k}: rel {rel:.3e} (tol {args.tol:g}), elem {elem:.3e} (tol {args.elem_tol:g})")
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print(f"PASS: the model contract agrees with PyTorch (rel <= {args.tol:g}, elem <= {args.elem_tol:g}); "
          "no gradient for the frozen decoder")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("h5")
    ap.add_argument("--tol", type=float, default=1e-4, help="max normwise relative error (default 1e-4)")
    ap.add_argument("--elem-tol", type=float, default=1e-2, help="max elementwise relative error with floor (default 1e-2)")
    ap.add_argument("--mutate", choices=["rope_half", "gqa_modulo", "decay_norms"] + CONTRACT_MUTATIONS, default=None)
    ap.add_argument("--quiet", action="store_true", help="print only the worst rows and the verdict")
    ap.add_argument("--contract", action="store_true", help="OUT.h5 is from ref_contract: check the model contract")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    if args.contract:
        return check_contract(args)
    f = open_h5(args.h5)
    if f is None:
        return 2
    with f:
        try:
            hp = read_hparams(f)
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
