#!/usr/bin/env python3
"""encoder_h5.py - second half of the weights conversion: OUT.json + OUT.bin
(from encoder_convert.js) -> the presight encoder weights file (HDF5).

usage: encoder_h5.py PREFIX OUT.h5 SOURCE PACKAGE_SHA256

Layout (read by datasets/encoder_weights.c):
  /tensors/<name>   float32, the TF shape (conv HWIO, depthwise HWCM)
  root attributes   format="presight-encoder-weights", format_version=1,
                    encoder, source, source_sha256, graph (the op list),
                    input_size, resize="bilinear_align_corners", scale=1/255
                    applied first, then norm_mul, norm_sub (x*mul - sub),
                    feature (the pooled output tensor)
Written to OUT.h5.tmp and renamed when complete."""
import json, os, sys
import h5py
import numpy as np

prefix, out, source, sha = sys.argv[1:5]
meta = json.load(open(prefix + ".json"))
flat = np.fromfile(prefix + ".bin", dtype="<f4")
tmp = out + ".tmp"
with h5py.File(tmp, "w") as f:
    for t in meta["tensors"]:
        n = int(np.prod(t["shape"]))
        # track_times=False: the same weights give the same bytes, so the file hash is stable
        f.create_dataset("tensors/" + t["name"], data=flat[t["offset"]:t["offset"] + n].reshape(t["shape"]), track_times=False)
    a = f.attrs
    a["format"] = "presight-encoder-weights"
    a["format_version"] = np.int32(1)
    a["encoder"] = meta["encoder"]
    a["source"] = source
    a["source_sha256"] = sha
    a["graph"] = meta["graph"]
    a["feature"] = meta["feature"]
    a["input_size"] = np.int32(meta["prep"]["input_size"])
    a["resize"] = "bilinear_align_corners"
    a["norm_mul"] = np.float32(meta["prep"]["norm_mul"])
    a["norm_sub"] = np.float32(meta["prep"]["norm_sub"])
os.replace(tmp, out)
print(f"encoder weights: {out}")
