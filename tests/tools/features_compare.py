#!/usr/bin/env python3
"""features_compare.py A.h5 B.h5 - exit 0 when two features files hold the same
datasets (bit for bit, NaN where NaN) and the same root attributes."""
import sys
import h5py
import numpy as np


def walk(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
da, db = walk(a), walk(b)
bad = []
if set(da) != set(db):
    bad.append(f"datasets differ: {sorted(set(da) ^ set(db))}")
for k in sorted(set(da) & set(db)):
    x, y = da[k], db[k]
    if x.dtype.kind == "f":
        same = x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)
    else:
        same = x.shape == y.shape and np.array_equal(x, y)
    if not same:
        bad.append(f"/{k} differs")
if dict(a.attrs) != dict(b.attrs):
    bad.append(f"attributes differ: {dict(a.attrs)} vs {dict(b.attrs)}")
print("; ".join(bad) if bad else f"same: {len(da)} datasets, {len(a.attrs)} attributes")
sys.exit(1 if bad else 0)
