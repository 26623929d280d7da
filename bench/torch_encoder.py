#!/usr/bin/env python3
"""torch_encoder.py WEIGHTS.h5 [images] - the same vision encoder in PyTorch,
built from presight's converted weights file (the op list in its `graph`
attribute, TF's SAME padding as an explicit F.pad), forward only, batch 1,
threads from OMP_NUM_THREADS; prints JSON with images/s. Tries NCHW and
channels_last and reports the faster (the fairest peer)."""
import json, os, sys, time
import h5py
import numpy as np
import torch
import torch.nn.functional as F


def load(path):
    f = h5py.File(path, "r")
    graph = f.attrs["graph"]
    graph = graph.decode() if isinstance(graph, bytes) else graph
    ops, t = [], {}
    for line in graph.split("\n"):
        p = line.split()
        if p[0] in ("conv", "dwconv"):
            w = np.array(f["tensors/" + p[3]])
            if p[0] == "conv":
                wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
            else:
                wt = torch.from_numpy(w[:, :, :, 0].transpose(2, 0, 1)[:, None].copy())  # HWC1 -> C1HW
            ops.append((p[0], p[1], p[2], wt, torch.from_numpy(np.array(f["tensors/" + p[4]])), int(p[5]), p[7], p[8]))
        elif p[0] == "add":
            ops.append(("add", p[1], p[2], p[3]))
        elif p[0] == "pool":
            ops.append(("pool", p[1], p[2]))
    return ops, int(f.attrs["input_size"])


def same_pad(x, k, s):
    h, w = x.shape[-2:]
    pads = []
    for n in (w, h):
        out = (n + s - 1) // s
        total = max((out - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def forward(ops, x):
    v = {"input": x}
    for op in ops:
        if op[0] in ("conv", "dwconv"):
            _, out, inp, w, b, s, pad, act = op
            y = v[inp]
            if pad == "SAME":
                y = same_pad(y, w.shape[-1], s)
            y = F.conv2d(y, w, b, stride=s, groups=w.shape[0] if op[0] == "dwconv" else 1)
            if act == "relu6":
                y = F.hardtanh(y, 0.0, 6.0)
            elif act == "relu":
                y = F.relu(y)
            v[out] = y
        elif op[0] == "add":
            v[op[1]] = v[op[2]] + v[op[3]]
        else:
            v[op[1]] = v[op[2]].mean((2, 3))
    return v


def main():
    ops, size = load(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    x0 = torch.from_numpy(((np.arange(size * size * 3) * 2654435761 % 1000) / 500.0 - 1).astype(np.float32))
    x0 = x0.reshape(1, size, size, 3).permute(0, 3, 1, 2).contiguous()
    best = None
    with torch.no_grad():
        for fmt in (torch.contiguous_format, torch.channels_last):
            x = x0.contiguous(memory_format=fmt)
            o = [(op[:3] + (op[3].contiguous(memory_format=fmt),) + op[4:]) if op[0] in ("conv", "dwconv") else op for op in ops]
            for _ in range(3):
                forward(o, x)
            t0 = time.perf_counter()
            for _ in range(n):
                forward(o, x)
            rate = n / (time.perf_counter() - t0)
            name = "channels_last" if fmt == torch.channels_last else "nchw"
            print(f"pytorch {name}: {rate:.2f} images/s", file=sys.stderr)
            if best is None or rate > best[0]:
                best = (rate, name)
        # oneDNN's own share: the time PyTorch spends inside aten::mkldnn_convolution
        # (oneDNN 2.6.3 kernels), per image, in the faster layout.
        fmt = torch.channels_last if best[1] == "channels_last" else torch.contiguous_format
        x = x0.contiguous(memory_format=fmt)
        o = [(op[:3] + (op[3].contiguous(memory_format=fmt),) + op[4:]) if op[0] in ("conv", "dwconv") else op for op in ops]
        reps = 5
        with torch.autograd.profiler.profile() as prof:
            for _ in range(reps):
                forward(o, x)
        ev = [e for e in prof.key_averages() if e.key == "aten::mkldnn_convolution"]
        onednn_ms = ev[0].self_cpu_time_total / 1e3 / reps if ev else None
        onednn_calls = ev[0].count // reps if ev else 0
    print(json.dumps({"images_per_s": best[0], "layout": best[1], "threads": threads, "torch": torch.__version__,
                      "onednn_conv_ms": onednn_ms, "onednn_conv_calls": onednn_calls,
                      "convs": sum(op[0] in ("conv", "dwconv") for op in ops)}))


main()
