#!/usr/bin/python3
"""llava_projector_check.py - presight export's LLaVA layout read the way LLaVA reads it.

    /usr/bin/python3 tests/reference/llava_projector_check.py EXPORT FEATURES.f32 N PRESIGHT.f32 \
        [--llama DIR] [--tol 1e-5]

EXPORT is `presight export` of an adapted model. The projector is built as LLaVA's
build_vision_projector builds it from config.json (llava/model/multimodal_projector/
builder.py: mm_projector_type "mlpNx_gelu" -> nn.Sequential(nn.Linear(mm_hidden_size,
hidden_size), then N-1 times nn.GELU(), nn.Linear(hidden_size, hidden_size))), its weights
loaded strictly from model.safetensors' model.mm_projector.* tensors (LlavaMetaModel's
mm_projector inside model), and run in float64 on FEATURES (N rows of mm_hidden_size
float32). Pass: |presight - torch| <= tol * (1 + |torch|) for every value of PRESIGHT.f32
(project_tool's output on the same features). With --llama DIR (the Llama export of the
same LLM), every other tensor must equal DIR's bit for bit. The negative control runs too:
the same projector with ReLU for GELU must miss the tolerance."""
import argparse
import json
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_torch_check import read_safetensors  # noqa: E402


def build_vision_projector(cfg, act):
    m = re.match(r"^mlp(\d+)x_gelu$", cfg["mm_projector_type"])
    assert m, cfg["mm_projector_type"]
    mods = [torch.nn.Linear(cfg["mm_hidden_size"], cfg["hidden_size"])]
    for _ in range(1, int(m.group(1))):
        mods += [act(), torch.nn.Linear(cfg["hidden_size"], cfg["hidden_size"])]
    return torch.nn.Sequential(*mods).double()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("features")
    ap.add_argument("n", type=int)
    ap.add_argument("presight")
    ap.add_argument("--llama")
    ap.add_argument("--tol", type=float, default=1e-5)
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.export, "config.json")))
    assert cfg["architectures"] == ["LlavaLlamaForCausalLM"] and cfg["mm_projector_type"] == "mlp2x_gelu", cfg
    assert cfg["mm_use_im_start_end"] is False and cfg["mm_use_im_patch_token"] is False, cfg
    w = read_safetensors(os.path.join(a.export, "model.safetensors"))
    pre = "model.mm_projector."
    x = torch.from_numpy(np.fromfile(a.features, dtype="<f4").reshape(a.n, cfg["mm_hidden_size"]).astype(np.float64))
    got = np.fromfile(a.presight, dtype="<f4").reshape(a.n, cfg["hidden_size"]).astype(np.float64)

    def error(act):
        proj = build_vision_projector(cfg, act)
        proj.load_state_dict({k[len(pre):]: v for k, v in w.items() if k.startswith(pre)}, strict=True)
        with torch.no_grad():
            want = proj(x).numpy()
        return (np.abs(got - want) / (1 + np.abs(want))).max(), np.abs(want).max()

    err, top = error(torch.nn.GELU)
    neg, _ = error(torch.nn.ReLU)
    print(f"projector: {a.n} rows {cfg['mm_hidden_size']} -> {cfg['hidden_size']}, max relative error {err:.2e}"
          f" (|out| up to {top:.3g}); with ReLU for GELU {neg:.2e} (the negative control)")
    ok = err <= a.tol < neg
    if a.llama:
        ref = read_safetensors(os.path.join(a.llama, "model.safetensors"))
        rest = {k for k in w if not k.startswith(pre)}
        same = rest == set(ref) and all(torch.equal(w[k], ref[k]) for k in ref)
        print(f"Llama tensors: {len(rest)}, {'bit-identical to' if same else 'DIFFERENT from'} {a.llama}")
        ok = ok and same
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
