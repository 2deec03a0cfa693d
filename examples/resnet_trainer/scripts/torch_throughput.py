#!/usr/bin/env python3
"""One PyTorch throughput run matching bench/trainer_throughput.cpp: the same
network, synthetic batch, SGD (Nesterov) step; prints one JSON line.

Run it with the environment of scripts/bench_throughput.py (OpenBLAS on one
thread, glibc malloc keeping its memory), or PyTorch is not at its best."""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import make, resnet_config  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (FP32: TF32 off, like psap's cuBLAS calls)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    depth = int(a.model[len("resnet"):].split("-")[0])
    net = make(resnet_config(depth, 10, a.channels, a.size, "B" if a.model.endswith("-B") else "A")).to(dev)
    x = torch.randn(a.batch, a.channels, a.size, a.size).to(dev)
    y = torch.randint(0, 10, (a.batch,)).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    train = a.mode == "train"
    net.train(train)

    def iteration():
        if train:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
        else:
            with torch.no_grad():
                net(x)

    for _ in range(a.warmup):
        iteration()
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.iters):
        iteration()
    sync()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"impl": "torch", "model": a.model, "mode": a.mode,
                      "input": f"{a.channels}x{a.size}x{a.size}", "batch": a.batch,
                      "threads": torch.get_num_threads(),
                      "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                      "img_per_s": round(a.batch * a.iters / dt, 2),
                      "img_per_cpu_s": round(a.batch * a.iters / cpu, 2)}))


if __name__ == "__main__":
    main()
