#!/usr/bin/python3
"""torch_train.py - the same training step in PyTorch, for make bench.

    /usr/bin/python3 bench/torch_train.py PRESIGHT_JSON

PRESIGHT_JSON is train_bench's output: the model shape, micro-batch, sequence
length, steps and threads presight ran with. The model is the reference
implementation the correctness test uses (tests/reference/torch_reference.py,
Meta's llama/model.py), in float32, trained with torch.optim.AdamW on random
tokens; one warm-up step, then the timed ones. Prints one JSON object.
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from torch_reference import Transformer  # noqa: E402


def train_flops_per_token(m, seq):
    """model_train_flops of core/model.c: 6 x matmul weights + 12 x layers x dim x seq (PaLM)."""
    hd = m["dim"] // m["heads"]
    qkv = (m["heads"] + 2 * m["kv_heads"]) * hd
    weights = m["layers"] * (m["dim"] * qkv + m["heads"] * hd * m["dim"] + 3 * m["dim"] * m["ffn_dim"])
    weights += m["vocab"] * m["dim"]
    return 6.0 * weights + 12.0 * m["layers"] * m["dim"] * seq


def main():
    ps = json.load(open(sys.argv[1]))
    m, batch, seq, steps = ps["model"], ps["micro_batch"], ps["seq_len"], ps["steps"]
    torch.set_num_threads(ps["threads"])
    torch.manual_seed(42)
    hp = dict(m, context=seq)
    model = Transformer(hp, torch.float32)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02) if p.dim() > 1 else torch.nn.init.ones_(p)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    tokens = torch.randint(0, m["vocab"], (batch, seq + 1))
    times = []
    for step in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, m["vocab"]), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step > 0:  # the first step pays for allocation
            times.append(time.perf_counter() - t)
    seconds = sum(times)
    tokens_per_s = batch * seq * len(times) / seconds
    print(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "step_s": seconds / len(times), "best_step_s": min(times), "tokens_per_s": tokens_per_s,
        "model_gflops": train_flops_per_token(m, seq) * tokens_per_s / 1e9, "final_loss": loss.item(),
    }))


if __name__ == "__main__":
    main()
