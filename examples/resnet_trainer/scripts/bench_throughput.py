#!/usr/bin/env python3
"""Training and inference throughput of the reference trainer against
PyTorch on the same machine, interleaved run by run so that load from other
processes hits both sides alike.

For every configuration (model × mode × input), each of --runs rounds runs
the C++ benchmark once and PyTorch once, in alternating order, each in a
fresh process; the table gives the median img/s, the min–max, and the median
of the per-round ratios C++ / PyTorch. PyTorch runs with OPENBLAS_NUM_THREADS=1
and glibc malloc told to keep its memory (see docs/benchmarks.md): without
them it loses 20–45 % here to page faults and spinning BLAS threads. The
last column compares images per CPU-second of each process, which a busy
machine disturbs less than wall-clock time (both sides spin in OpenMP
barriers when a thread is descheduled).

  scripts/bench_throughput.py --bench build/examples/resnet_trainer/psap_trainer_bench
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH_ENV = {"OPENBLAS_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "33554432",
             "MALLOC_TRIM_THRESHOLD_": "17179869184", "MALLOC_TOP_PAD_": "536870912"}


def run(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["img_per_s"], r["img_per_cpu_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="psap_trainer_bench binary")
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with torch")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--models", default="resnet20,resnet56")
    ap.add_argument("--modes", default="train,infer")
    ap.add_argument("--inputs", default="3x32,1x28", help="CHANNELSxSIZE list")
    ap.add_argument("--json", help="also write the raw runs here")
    a = ap.parse_args()
    torch_env = dict(os.environ, **TORCH_ENV)
    rows, raw = [], []
    load0 = os.getloadavg()[0]
    for model in a.models.split(","):
        for inp in a.inputs.split(","):
            ch, size = inp.split("x")
            for mode in a.modes.split(","):
                # Enough iterations for ~2–4 s per run on this class of machine.
                heavy = (2.0 if mode == "train" else 0.5) * (int(model[6:]) / 20) * (int(size) / 32) ** 2
                iters = max(4, int(round(12 / heavy)))
                args = ["--model", model, "--mode", mode, "--channels", ch, "--size", size, "--batch",
                        str(a.batch), "--threads", str(a.threads), "--warmup", "2", "--iters", str(iters)]
                ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
                for r in range(a.runs):
                    sides = [("psap", lambda: run([a.bench] + args)),
                             ("torch", lambda: run([a.python, os.path.join(HERE, "torch_throughput.py")] + args,
                                                   torch_env))]
                    if r % 2:
                        sides.reverse()
                    for name, fn in sides:
                        v, c = fn()
                        (ours if name == "psap" else theirs).append(v)
                        (ours_cpu if name == "psap" else theirs_cpu).append(c)
                        raw.append({"model": model, "mode": mode, "input": inp, "impl": name, "img_per_s": v,
                                    "img_per_cpu_s": c, "load": os.getloadavg()[0]})
                ratios = [o / t for o, t in zip(ours, theirs)]
                cpu_ratio = statistics.median(ours_cpu) / statistics.median(theirs_cpu)
                rows.append((model, mode, f"{ch}x{size}x{size}", ours, theirs, ratios, cpu_ratio))
                print(f"{model:8} {mode:5} {ch}x{size}x{size}: psap {statistics.median(ours):8.1f}  "
                      f"torch {statistics.median(theirs):8.1f}  ratio {statistics.median(ratios):.2f}  "
                      f"(per CPU-second {cpu_ratio:.2f}; load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    print(f"\nbatch {a.batch}, {a.threads} threads, {a.runs} interleaved runs per side; img/s median (min–max); "
          f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end\n")
    print("| model | mode | input | psap img/s | PyTorch img/s | psap / PyTorch | same, per CPU-second |")
    print("|---|---|---|---|---|---|---|")
    for model, mode, inp, ours, theirs, ratios, cpu_ratio in rows:
        print(f"| {model} | {mode} | {inp} | {statistics.median(ours):.0f} ({min(ours):.0f}–{max(ours):.0f}) | "
              f"{statistics.median(theirs):.0f} ({min(theirs):.0f}–{max(theirs):.0f}) | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | {cpu_ratio:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
