#!/usr/bin/env python3
"""Cross-check the reference trainer against PyTorch.

For each network, runs trainer_torch_dump (C++) to get weights, a batch, the
train-mode logits/loss, every parameter gradient, BN running statistics after
the forward and eval-mode logits; rebuilds the same network in PyTorch from
the dumped config, loads the weights, runs the same batch in float64 and
compares with a norm-based relative error per tensor, ‖a − b‖ / ‖b‖
(absolute when ‖b‖ = 0), against --tol (1e-4).

Exit status: 0 all agree, 1 a mismatch, 77 torch is not importable (CTest
SKIP_RETURN_CODE).
"""
import argparse
import copy
import json
import os
import subprocess
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIP: cannot import torch/numpy with {sys.executable}: {e}")
    sys.exit(77)


class OptionA(nn.Module):
    """y[:, j] = x[:, map[j], ::2, ::2], or 0 where map[j] = -1."""

    def __init__(self, channel_map):
        super().__init__()
        self.register_buffer("index", torch.tensor([max(m, 0) for m in channel_map]), persistent=False)
        self.register_buffer("keep", torch.tensor([1.0 if m >= 0 else 0.0 for m in channel_map]), persistent=False)

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        return x.index_select(1, self.index) * self.keep.view(1, -1, 1, 1)


class BasicBlock(nn.Module):
    def __init__(self, cin, mid, cout, stride, shortcut, channel_map):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.option_a = None
        self.downsample = None
        if stride != 1 or cin != cout:
            if shortcut == "A":
                self.option_a = OptionA(channel_map)
            else:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.option_a is not None:
            sc = self.option_a(x)
        elif self.downsample is not None:
            sc = self.downsample(x)
        else:
            sc = x
        return F.relu(out + sc)


class ResNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        widths = cfg["stage_widths"]
        self.conv1 = nn.Conv2d(cfg["in_channels"], widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for s, blocks in enumerate(cfg["block_widths"]):
            layers = []
            for b, mid in enumerate(blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                cmap = cfg.get("shortcut_maps", [[]] * len(widths))[s] if b == 0 else []
                layers.append(BasicBlock(cin, mid, widths[s], stride, cfg["shortcut"], cmap))
                cin = widths[s]
            setattr(self, f"layer{s + 1}", nn.Sequential(*layers))
        self.stages = len(widths)
        self.fc = nn.Linear(widths[-1], cfg["num_classes"])

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for s in range(self.stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class VGG16(nn.Module):
    POOL_AFTER = {1, 3, 6, 9, 12}

    def __init__(self, cfg):
        super().__init__()
        layers, cin = [], cfg["in_channels"]
        for i, w in enumerate(cfg["widths"]):
            layers += [nn.Conv2d(cin, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i in self.POOL_AFTER:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            cin = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, cfg["num_classes"])

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def load_dump(prefix):
    with open(prefix + ".json") as f:
        meta = json.load(f)
    data = np.fromfile(prefix + ".bin", dtype="<f4")
    tensors = {}
    for t in meta["tensors"]:
        a = data[t["offset"]: t["offset"] + t["count"]].astype(np.float64)
        tensors[t["name"]] = a.reshape(t["shape"]) if t["shape"] else a.reshape(())
    return meta, tensors


def rel(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a - b))


def pool_margin(net, x):
    """Smallest gap between the two largest values of a max-pool window
    (relative to the window's maximum) over windows with a positive maximum:
    near float rounding (activations carry ~1e-6..1e-5 relative error deep in
    the net), the C++ float forward may legitimately pick the other element
    and route a whole window's gradient elsewhere."""
    margins = []

    def hook(module, inputs, output):
        a = inputs[0]
        n, c, h, w = a.shape
        a = F.pad(a, (0, w % 2, 0, h % 2), value=-float("inf"))
        win = a.unfold(2, 2, 2).unfold(3, 2, 2).reshape(n, c, -1, 4)
        top = win.topk(2, dim=-1).values
        pos = top[..., 0] > 0
        if pos.any():
            margins.append(float(((top[..., 0] - top[..., 1]) / top[..., 0])[pos].min()))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    saved = copy.deepcopy(net.state_dict())  # the train-mode pass moves the running statistics
    with torch.no_grad():
        net.train()
        net(x)
    net.load_state_dict(saved)
    for h in handles:
        h.remove()
    return min(margins) if margins else float("inf")


def build(prefix):
    meta, d = load_dump(prefix)
    cfg = meta["config"]
    net = ResNet(cfg) if cfg["arch"] == "resnet" else VGG16(cfg)
    state = net.state_dict()
    for name in state:
        if name.endswith("num_batches_tracked"):
            continue
        key = "param:" + name
        if key not in d:
            raise SystemExit(f"{meta['model']}: the dump has no tensor {name}; the names differ from PyTorch's")
        if tuple(state[name].shape) != d[key].shape:
            raise SystemExit(f"{meta['model']}: shape of {name} is {d[key].shape} in C++, {tuple(state[name].shape)} in torch")
        state[name] = torch.from_numpy(d[key])
    dumped = {k[6:] for k in d if k.startswith("param:")}
    missing = dumped - set(state)
    if missing:
        raise SystemExit(f"{meta['model']}: C++ tensors unknown to torch: {sorted(missing)}")
    net.load_state_dict(state)
    return meta, d, net


def reference(net, d, dtype):
    """Train-mode logits, loss, gradients, updated running statistics and
    eval-mode logits of `net` (a fresh copy) computed in `dtype`."""
    net = copy.deepcopy(net).to(dtype)
    net.train()
    x = torch.from_numpy(d["input"]).to(dtype)
    y = torch.from_numpy(d["labels"]).long()
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    out = {"logits": logits.detach().double().numpy(), "loss": loss.item()}
    for name, p in net.named_parameters():
        out["grad " + name] = p.grad.double().numpy()
    for name, b in net.state_dict().items():
        if name.endswith("running_mean") or name.endswith("running_var"):
            out["after " + name] = b.double().numpy()
    net.eval()
    with torch.no_grad():
        out["eval logits"] = net(x).double().numpy()
    return out


def dumped(d, key):
    kind, _, name = key.partition(" ")
    return {"logits": d["logits"], "loss": d["loss"], "eval": d["eval_logits"]}.get(kind, d.get(kind + ":" + name))


def check(meta, d, net, tol):
    """C++ (float32) against PyTorch in float64. Where the float64 answer is
    itself ill-conditioned at float32 precision (PyTorch's own float32 run
    deviates from it), the tolerance widens to 10x that deviation."""
    truth = reference(net, d, torch.float64)
    f32 = reference(net, d, torch.float32)
    rows = [(k, rel(dumped(d, k), v), rel(f32[k], v)) for k, v in truth.items()]
    f32_grads = [r[2] for r in rows if r[0].startswith("grad ")]
    limit = max(tol, 10 * float(np.median(f32_grads)))
    worst = max(rows, key=lambda r: r[1])
    grads = [r[1] for r in rows if r[0].startswith("grad ")]
    ok = worst[1] <= limit
    print(f"{meta['model']:>16}: {len(rows)} tensors, max rel err {worst[1]:.2e} ({worst[0]}), "
          f"median grad {np.median(grads):.2e} (torch float32: {np.median(f32_grads):.2e}), "
          f"logits {rows[0][1]:.2e}, limit {limit:.0e} -> {'OK' if ok else 'MISMATCH'}")
    if not ok:
        for name, e, e32 in rows:
            if e > limit:
                print(f"    {name}: {e:.3e} (torch float32 {e32:.3e})")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dump", required=True, help="path of the trainer_torch_dump binary")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--models", default="resnet20:16,resnet20-B:16,resnet20-pruned:16,vgg16-8px:4,vgg16-narrow:4",
                    help="comma-separated MODEL:BATCH (models known to trainer_torch_dump)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    # Float64 in torch: the reference side should not add its own rounding.
    torch.set_default_dtype(torch.float64)
    os.makedirs(args.workdir, exist_ok=True)
    ok = True
    for spec in args.models.split(","):
        m, batch = spec.split(":")
        prefix = os.path.join(args.workdir, m)
        # Batches whose max-pool decisions sit within float rounding of a tie
        # are skipped (chosen on the torch side alone, before comparing).
        for seed in range(99, 99 + 50):
            subprocess.run([args.dump, m, batch, prefix, str(seed)], check=True)
            meta, d, net = build(prefix)
            margin = pool_margin(net, torch.from_numpy(d["input"]))
            if margin > 1e-4:
                break
            print(f"{m:>16}: data seed {seed} has a max-pool near-tie ({margin:.1e}); next seed")
        ok &= check(meta, d, net, args.tol)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
