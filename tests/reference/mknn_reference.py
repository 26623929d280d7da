"""Mutual k-NN alignment written from its definition, in numpy, as the reference for
core/mknn.c (tests/t_mknn.sh runs it).

The definition is the Platonic Representation paper's (Huh et al. 2024) as their code
minyoungg/platonic-rep computes it (measure_alignment.py prepare_features/compute_score,
metrics.py remove_outliers/mutual_knn/compute_nearest_neighbors):
  - threshold: default mode, mean over items of torch.quantile(|x_item|, q) (linear
    interpolation over the item's layers*dim values); --precise mode,
    sorted(|all|)[int(q * numel)]; then clamp to [-t, t];
  - each (item, layer) row divided by max(||row||, 1e-12);
  - knn = argsort of (X X^T with the diagonal set to -1e8), descending, first k;
  - score = mean_i |knn_A(i) ∩ knn_B(i)| / k; the best over layer pairs, starting at 0,
    kept only when strictly larger.
Written in numpy with float64 similarities; nothing is shared with the C code."""
import subprocess
import sys
import tempfile
import os

import numpy as np


def prepare(feats, q, exact):
    feats = feats.astype(np.float32)
    if q < 1:
        if exact:
            t = np.sort(np.abs(feats).reshape(-1))[int(q * feats.size)]
        else:
            per_item = np.quantile(np.abs(feats).reshape(feats.shape[0], -1), q, axis=1)
            t = np.float32(per_item.astype(np.float64).mean())
        feats = np.clip(feats, -t, t)
    norms = np.linalg.norm(feats.astype(np.float64), axis=-1, keepdims=True)
    return (feats / np.maximum(norms, 1e-12)).astype(np.float32)


def knn(x, k):
    x = x.astype(np.float64)
    sim = x @ x.T
    np.fill_diagonal(sim, -1e8)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def mutual_knn(a, b, k):
    na, nb = knn(a, k), knn(b, k)
    n = a.shape[0]
    mask_a = np.zeros((n, n))
    mask_b = np.zeros((n, n))
    rows = np.arange(n)[:, None]
    mask_a[rows, na] = 1.0
    mask_b[rows, nb] = 1.0
    return float(((mask_a * mask_b).sum(axis=1) / k).mean())


def align(a, b, k):
    best, where = 0.0, (-1, -1)
    pairs = np.zeros((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            s = mutual_knn(a[:, i, :], b[:, j, :], k)
            pairs[i, j] = s
            if s > best:
                best, where = s, (i, j)
    return best, where, pairs


def run_case(tool, name, a, b, k, q, exact, tmp):
    n, la, da = a.shape
    _, lb, db = b.shape
    pa, pb, out = (os.path.join(tmp, f"{name}.{x}.f32") for x in ("a", "b", "prep"))
    a.astype("<f4").tofile(pa)
    b.astype("<f4").tofile(pb)
    res = subprocess.run([tool, str(n), str(k), repr(q), "exact" if exact else "mean", pa, str(la), str(da),
                          pb, str(lb), str(db), out], capture_output=True, text=True)
    if res.returncode != 0:
        print(f"{name}: tool failed: {res.stderr}")
        return False
    lines = res.stdout.split("\n")
    score, layer_a, layer_b = lines[0].split()
    c_pairs = np.array([float(v) for v in lines[1].split()]).reshape(la, lb)
    c_prep = np.fromfile(out, dtype="<f4").reshape(n, la, da)
    ra, rb = prepare(a, q, exact), prepare(b, q, exact)
    best, where, pairs = align(ra, rb, k)
    ok = True
    prep_err = float(np.abs(c_prep - ra).max())
    if prep_err > 1e-6:
        print(f"{name}: prepared features differ by {prep_err}")
        ok = False
    if np.abs(c_pairs - pairs).max() > 1e-12 or abs(float(score) - best) > 1e-12 or \
            (int(layer_a), int(layer_b)) != where:
        print(f"{name}: C {score} at ({layer_a},{layer_b}) vs numpy {best} at {where}; "
              f"pair scores differ by {np.abs(c_pairs - pairs).max()}")
        ok = False
    print(f"{name}: n={n} k={k} q={q} {'exact' if exact else 'mean'} score {best:.6f} at {where} "
          f"C {float(score):.6f}: {'ok' if ok else 'MISMATCH'}")
    return ok


def main():
    tool = sys.argv[1]
    rng = np.random.default_rng(20260603)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        # Independent random features (heavy tails so that the clamp bites).
        a = rng.standard_t(3, size=(120, 3, 16))
        b = rng.standard_t(3, size=(120, 2, 24))
        ok &= run_case(tool, "random", a, b, 20, 0.95, False, tmp)
        ok &= run_case(tool, "random-exact", a, b, 20, 0.95, True, tmp)
        # Structured: B's layer 1 is a noisy linear image of A's layer 2, the rest noise.
        n = 150
        latent = rng.normal(size=(n, 12))
        a = rng.normal(size=(n, 4, 12))
        a[:, 2, :] = latent
        b = rng.normal(size=(n, 3, 20))
        b[:, 1, :] = latent @ rng.normal(size=(12, 20)) + 0.3 * rng.normal(size=(n, 20))
        ok &= run_case(tool, "structured", a, b, 20, 0.95, False, tmp)
        ok &= run_case(tool, "structured-k5-noclamp", a, b, 5, 1.0, False, tmp)
        # Negative control: the reference must notice a wrong k-NN (B's rows shuffled).
        pb = b[rng.permutation(n)]
        best_shuffled = align(prepare(a, 0.95, False), prepare(pb, 0.95, False), 20)[0]
        best = align(prepare(a, 0.95, False), prepare(b, 0.95, False), 20)[0]
        print(f"negative control: aligned {best:.4f}, rows shuffled {best_shuffled:.4f}")
        if not best > best_shuffled + 0.2:
            print("negative control failed: shuffling the items did not lower the score")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
