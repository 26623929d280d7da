#!/usr/bin/python3
"""check_checkpoint.py - reads a presight checkpoint with h5py, independently of presight's C code.

    check_checkpoint.py FILE... --vocab V --dim D --layers L --heads H --kv-heads K --ffn F [--tied]
                        [--values ckpt_tool] [--quiet]

Prints the layout (every group, dataset, shape and dtype, and the /state
attributes) and checks, against stages/checkpoint.h:
  * /model, /optim/m and /optim/v hold exactly the tensors of the model given on
    the command line, under Meta's names, float32, at their logical shapes
    ([rows, cols], or [rows] for vectors);
  * /state has every documented attribute with its type; format_version is 2;
  * the stored checksum (and model_checksum, /model alone) equals one recomputed here with numpy from the data
    (sum over elements of rng_mix(key ^ index * 0x9e3779b97f4a7c15 ^ float32
    bits) mod 2^64, key = rng_key(group salt, tensor name));
  * with --values ckpt_tool: every element equals tests/tools/ckpt_tool's
    value(group, tensor, index), reimplemented here.
Exit 0 when everything holds, 1 on any failure (each printed as "FAIL ...").
"""
import argparse
import sys

import h5py
import numpy as np

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
SALTS = {"model": 0x6D6F64656C000001, "optim/m": 0x6F7074696D2F6D02, "optim/v": 0x6F7074696D2F7603}


def mix_int(x):
    """rng_mix (splitmix64's finaliser) on a Python int."""
    x = (x + GOLDEN) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def mix_np(x):
    """rng_mix on a uint64 array (numpy array arithmetic wraps mod 2^64)."""
    x = x + np.uint64(GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def rng_key(seed, purpose):
    h = 0xCBF29CE484222325
    for byte in purpose.encode():
        h = ((h ^ byte) * 0x100000001B3) & M64
    return mix_int(h ^ mix_int(seed))


def checksum_of(group, name, data):
    key = np.uint64(rng_key(SALTS[group], name))
    bits = np.ascontiguousarray(data, dtype="<f4").reshape(-1).view("<u4").astype(np.uint64)
    index = np.arange(bits.size, dtype=np.uint64)
    terms = mix_np(key ^ (index * np.uint64(GOLDEN)) ^ bits)
    return int(terms.sum(dtype=np.uint64))


def tool_values(group_index, name, n):
    """tests/tools/ckpt_tool.c value(): 23 random bits of rng_u64(rng_key(1000 + g, name), i)."""
    key = mix_int(rng_key(1000 + group_index, name))
    i = np.arange(n, dtype=np.uint64)
    r = mix_np(np.uint64(key) ^ mix_np(i + np.uint64(0x632BE59BD9B4E019))) >> np.uint64(41)
    return (r.astype(np.float64) * (1.0 / 4194304.0) - 1.0).astype(np.float32)


def model_tensors(a):
    """Meta names and shapes, in presight's order (core/model.c)."""
    hd = a.dim // a.heads
    out = [("tok_embeddings.weight", (a.vocab, a.dim))]
    for layer in range(a.layers):
        p = f"layers.{layer}."
        out += [
            (p + "attention_norm.weight", (a.dim,)),
            (p + "attention.wq.weight", (a.heads * hd, a.dim)),
            (p + "attention.wk.weight", (a.kv_heads * hd, a.dim)),
            (p + "attention.wv.weight", (a.kv_heads * hd, a.dim)),
            (p + "attention.wo.weight", (a.dim, a.heads * hd)),
            (p + "ffn_norm.weight", (a.dim,)),
            (p + "feed_forward.w1.weight", (a.ffn, a.dim)),
            (p + "feed_forward.w3.weight", (a.ffn, a.dim)),
            (p + "feed_forward.w2.weight", (a.dim, a.ffn)),
        ]
    out.append(("norm.weight", (a.dim,)))
    if not a.tied:
        out.append(("output.weight", (a.vocab, a.dim)))
    return out


STATE = {  # attribute -> (numpy kind, shape)
    "step": ("i", ()),
    "total_steps": ("i", ()),
    "seed": ("u", ()),
    "tokens": ("f", ()),
    "elapsed_s": ("f", ()),
    "data_state": ("u", (4,)),
    "world_size": ("i", ()),
    "strategy": ("S", ()),
    "format_version": ("i", ()),
    "checksum": ("u", ()),
    "model_checksum": ("u", ()),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", metavar="FILE")
    for k in ("vocab", "dim", "layers", "heads", "kv-heads", "ffn"):
        ap.add_argument("--" + k, type=int, required=True)
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--values", choices=["ckpt_tool"])
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    return max(check(a, path) for path in a.files)


def check(a, path):
    failures = []

    def fail(msg):
        failures.append(msg)
        print("FAIL " + msg)

    def say(msg):
        if not a.quiet:
            print(msg)

    expected = model_tensors(a)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        fail(f"{path}: h5py cannot open it: {e}")
        return 1
    with f:
        say(f"{path}:")
        total = model_total = 0
        for gi, group in enumerate(("model", "optim/m", "optim/v")):
            if group not in f:
                fail(f"/{group} is missing")
                continue
            g = f[group]
            names = set(g.keys())
            want = {n for n, _ in expected}
            for extra in sorted(names - want):
                fail(f"/{group}/{extra} is not a tensor of this model")
            for name, shape in expected:
                if name not in g:
                    fail(f"/{group}/{name} is missing")
                    continue
                d = g[name]
                say(f"  /{group}/{name:40s} {str(list(d.shape)):14s} {d.dtype}")
                if d.shape != shape:
                    fail(f"/{group}/{name} has shape {list(d.shape)}, expected {list(shape)}")
                    continue
                if d.dtype != np.dtype("<f4"):
                    fail(f"/{group}/{name} is {d.dtype}, expected float32")
                data = d[()]
                total = (total + checksum_of(group, name, data)) & M64
                if gi == 0:
                    model_total = (model_total + checksum_of(group, name, data)) & M64
                if a.values == "ckpt_tool":
                    want_values = tool_values(gi, name, data.size).reshape(shape)
                    bad = np.flatnonzero(want_values.view("<u4") != np.asarray(data, "<f4").view("<u4"))
                    if bad.size:
                        fail(f"/{group}/{name}: {bad.size} elements differ from ckpt_tool's values "
                             f"(first at flat index {bad[0]}: {data.reshape(-1)[bad[0]]} != {want_values.reshape(-1)[bad[0]]})")
        if "state" not in f:
            fail("/state is missing")
        else:
            attrs = f["state"].attrs
            say("  /state:")
            for key in sorted(attrs.keys()):
                value = attrs[key]
                shown = value if key != "config" else f"<{len(value)} bytes of config text>"
                say(f"    {key:15s} = {shown}")
            for key, (kind, shape) in STATE.items():
                if key not in attrs:
                    fail(f"/state attribute {key} is missing")
                    continue
                value = np.asarray(attrs[key])
                if value.dtype.kind != kind or value.shape != shape:
                    fail(f"/state {key} is {value.dtype}{list(value.shape)}, expected kind {kind}{list(shape)}")
            if "format_version" in attrs and int(attrs["format_version"]) != 2:
                fail(f"format_version is {attrs['format_version']}, expected 2")
            if "model_checksum" in attrs and int(attrs["model_checksum"]) != model_total:
                fail(f"model_checksum: stored {int(attrs['model_checksum']):016x}, recomputed {model_total:016x}")
            if "checksum" in attrs:
                stored = int(attrs["checksum"])
                if stored != total:
                    fail(f"checksum: stored {stored:016x}, recomputed with numpy {total:016x}")
                else:
                    say(f"  checksum {stored:016x} matches the numpy recomputation")
    if failures:
        print(f"FAIL: {len(failures)} problem(s) in {path}")
        return 1
    print(f"ok {path}: layout, shapes, dtypes, /state and checksum as documented"
          + (" and every value as ckpt_tool wrote it" if a.values else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
