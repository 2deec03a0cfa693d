#!/usr/bin/env python3
"""PyTorch pruning steps on ResNet-56 conv weights, next to psap's steps.

The shapes are those of benchmarks/resnet56.hpp (CIFAR ResNet-56, option A:
stem 3->16, three stages of nine blocks with 16/32/64 channels, 3x3 kernels;
the FC layer is never pruned). Two layer sets, matching the two networks of
psap_benchmarks:

  internal  the 27 block-internal convs (each block's conv1): psap's
            "internal" network (27 groups)
  all       every conv, 55 layers (stem, conv1s, conv2s), each pruned on its
            own: the set psap's "streams" network covers (there the stem and
            conv2s are pruned as three coupled residual-stream groups)

What is timed, one pruning step over the set, same ratio in every layer:

  ln_l1, ln_l2   torch.nn.utils.prune.ln_structured(conv, "weight", ratio,
                 n=1 or 2, dim=0) on every conv: norms, mask, weight_orig /
                 weight_mask re-parametrisation, masked weight. Between
                 repeats (untimed) prune.remove() and the original weights
                 are restored, so every timed call is a first pruning.
  sfp            a hand-written SFP step (He et al. 2018) per layer: per-filter
                 L2 norms, the k smallest by topk (or kthvalue with
                 --select kthvalue), those filters zeroed in place. Weights
                 restored between repeats (untimed).
  sfp_stacked    the same step with PyTorch at its best: the layers of one
                 shape live in one stacked tensor (the convs' weights are
                 views of it), so one stage is norms + topk + scatter + mul
                 over all its layers: 3 x 4 kernels instead of 3 per layer.
  l1_norms       per-filter L1 norms alone, per layer (no selection, no write).

Each is timed at torch.set_num_threads(2) and (1) (--threads), repeats
interleaved method by method; ms per step is the median (min-max in the
table). With --psap-bench PATH the psap_benchmarks binary (Google Benchmark,
benchmarks/library_benchmark.cpp) runs in the same process tree, round by
round with the PyTorch side (--rounds), and the script prints psap / torch
ratios from the medians of the same run:

  /usr/bin/python3 benchmarks/torch_pruning_step.py \\
      --psap-bench build/bench/benchmarks/psap_benchmarks --json out.json

Use /usr/bin/python3 (Debian python3-torch). OPENBLAS_NUM_THREADS=1 and
glibc's malloc keeping its memory are set for this process when absent
(see docs/benchmarks.md), as for the trainer comparison.
"""
import os

for _k, _v in {"OPENBLAS_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "33554432",
               "MALLOC_TRIM_THRESHOLD_": "17179869184", "MALLOC_TOP_PAD_": "536870912"}.items():
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.utils.prune as prune  # noqa: E402


# ---------------------------------------------------------------- the model


def resnet56_convs():
    """(name, out, in, stage) of every conv of benchmarks/resnet56.hpp, in its order."""
    convs = [("stem", 16, 3, 0)]
    for st in (1, 2, 3):
        c = 16 << (st - 1)
        for b in range(1, 10):
            convs.append((f"s{st}b{b}c1", c, c // 2 if (st > 1 and b == 1) else c, st))
            convs.append((f"s{st}b{b}c2", c, c, st))
    return convs


class model:
    """The convs of one layer set as nn.Conv2d, plus stacked storage per shape
    for sfp_stacked (each conv's weight is a view into its shape's stack)."""

    def __init__(self, which, seed=20261128):
        g = torch.Generator().manual_seed(seed)
        spec = [c for c in resnet56_convs() if which == "all" or c[0].endswith("c1")]
        self.names = [c[0] for c in spec]
        self.convs = []
        for _, out, cin, _ in spec:
            m = nn.Conv2d(cin, out, 3, padding=1, bias=False)
            with torch.no_grad():
                m.weight.normal_(0.0, (2.0 / (cin * 9)) ** 0.5, generator=g)
            self.convs.append(m)
        self.original = [m.weight.detach().clone() for m in self.convs]
        # Stacks: one (L, out, in*9) tensor per distinct shape; sfp_stacked works on these.
        shapes = {}
        for i, m in enumerate(self.convs):
            shapes.setdefault(tuple(m.weight.shape), []).append(i)
        self.stacks = []
        for shape, idx in shapes.items():
            s = torch.stack([self.original[i] for i in idx]).reshape(len(idx), shape[0], -1).contiguous()
            self.stacks.append((s, idx))
        self.stack_original = [s.clone() for s, _ in self.stacks]
        self.bytes = sum(w.numel() * 4 for w in self.original)

    def restore(self):
        with torch.no_grad():
            for m, w in zip(self.convs, self.original):
                m.weight.copy_(w)
            for (s, _), o in zip(self.stacks, self.stack_original):
                s.copy_(o)

    def unprune(self):
        for m in self.convs:
            if prune.is_pruned(m):
                prune.remove(m, "weight")
        self.restore()


# ---------------------------------------------------------------- the steps


def ln_step(mdl, ratio, n):
    for m in mdl.convs:
        prune.ln_structured(m, "weight", amount=ratio, n=n, dim=0)


def sfp_step(mdl, ratio, select):
    with torch.no_grad():
        for m in mdl.convs:
            w = m.weight
            out = w.shape[0]
            k = int(out * ratio)
            if k == 0:
                continue
            norms = w.reshape(out, -1).norm(p=2, dim=1)
            if select == "kthvalue":
                t = norms.kthvalue(k).values
                w[norms <= t] = 0  # ties at the threshold prune more, as in SFP's reference code
            else:
                idx = norms.topk(k, largest=False).indices
                w.index_fill_(0, idx, 0.0)


def sfp_stacked_step(mdl, ratio):
    with torch.no_grad():
        for s, _ in mdl.stacks:
            out = s.shape[1]
            k = int(out * ratio)
            if k == 0:
                continue
            norms = torch.linalg.vector_norm(s, ord=2, dim=2)
            idx = norms.topk(k, dim=1, largest=False).indices
            keep = torch.ones_like(norms).scatter_(1, idx, 0.0)
            s.mul_(keep.unsqueeze(2))


def l1_norms(mdl):
    with torch.no_grad():
        return [m.weight.reshape(m.weight.shape[0], -1).norm(p=1, dim=1) for m in mdl.convs]


METHODS = ("ln_l1", "ln_l2", "sfp", "sfp_stacked", "l1_norms")


def time_method(mdl, method, ratio, select, repeats, warmup):
    """Median, min, max of `repeats` timed steps (seconds), after `warmup` untimed ones."""
    call = {"ln_l1": lambda: ln_step(mdl, ratio, 1),
            "ln_l2": lambda: ln_step(mdl, ratio, 2),
            "sfp": lambda: sfp_step(mdl, ratio, select),
            "sfp_stacked": lambda: sfp_stacked_step(mdl, ratio),
            "l1_norms": lambda: l1_norms(mdl)}[method]
    reset = mdl.unprune if method.startswith("ln") else mdl.restore
    times = []
    for r in range(warmup + repeats):
        reset()
        t0 = time.perf_counter()
        call()
        dt = time.perf_counter() - t0
        if r >= warmup:
            times.append(dt)
    reset()
    return times


def check(mdl, ratio):
    """The steps prune what they should: same filters for sfp, sfp_stacked and ln_l2."""
    mdl.unprune()
    sfp_step(mdl, ratio, "topk")
    a = [m.weight.detach().reshape(m.weight.shape[0], -1).abs().sum(1) == 0 for m in mdl.convs]
    mdl.restore()
    sfp_stacked_step(mdl, ratio)
    b = [None] * len(mdl.convs)
    for s, idx in mdl.stacks:
        z = s.abs().sum(2) == 0
        for j, i in enumerate(idx):
            b[i] = z[j]
    mdl.restore()
    ln_step(mdl, ratio, 2)
    c = [m.weight_mask.reshape(m.weight_mask.shape[0], -1)[:, 0] == 0 for m in mdl.convs]
    mdl.unprune()
    for x, y, z, m in zip(a, b, c, mdl.convs):
        k = int(m.weight.shape[0] * ratio)
        if not (torch.equal(x, y) and torch.equal(x, z) and int(x.sum()) == k):
            raise SystemExit(f"torch_pruning_step: the steps disagree on a layer of {m.weight.shape[0]} filters")


# ---------------------------------------------------------------- psap side


def run_psap(binary, presets, threads, min_time):
    nets = "(internal|streams)"
    ths = "|".join(str(t) for t in threads)
    filt = (f"^((step|observe)/({'|'.join(presets)})/{nets}/threads:({ths})"
            f"|read/(step|observe)_bytes/{nets}/threads:({ths}))/")
    out = subprocess.run([binary, f"--benchmark_filter={filt}", "--benchmark_format=json",
                          f"--benchmark_min_time={min_time}"], check=True, capture_output=True, text=True)
    res = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        name = b["name"].replace("/manual_time", "")
        res[name] = {"med_us": b["med_us"], "read_us": b["read_us"], "x_read": b["x_read"],
                     "bytes": b["bytes"], "GB/s": b["GB/s"]}
    return res


# ---------------------------------------------------------------- main


def fmt(ts):
    return f"{1e3 * statistics.median(ts):7.3f} ({1e3 * min(ts):.3f}-{1e3 * max(ts):.3f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ratio", type=float, default=0.5, help="fraction of filters pruned in every layer")
    ap.add_argument("--threads", default="2,1", help="torch.set_num_threads values")
    ap.add_argument("--sets", default="internal,all")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--select", choices=["topk", "kthvalue"], default="topk", help="selection of the sfp step")
    ap.add_argument("--repeats", type=int, default=60, help="timed steps per method, thread count and round")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (torch, psap) in this run")
    ap.add_argument("--psap-bench", help="psap_benchmarks binary: also run psap's steps, round by round")
    ap.add_argument("--psap-presets", default="psap,psap_unchecked,sfp,l1,agp")
    ap.add_argument("--psap-min-time", default="0.2", help="--benchmark_min_time of the psap binary (seconds)")
    ap.add_argument("--json", help="write every sample here")
    a = ap.parse_args()

    threads = [int(t) for t in a.threads.split(",")]
    sets = a.sets.split(",")
    methods = a.methods.split(",")
    models = {s: model(s) for s in sets}
    for s in sets:
        check(models[s], a.ratio)
    load = [os.getloadavg()]
    torch_t = {}   # (set, method, threads) -> [seconds]
    psap_r = []    # one dict per round
    for rnd in range(a.rounds):
        for t in threads:
            torch.set_num_threads(t)
            for s in sets:
                for meth in methods:
                    torch_t.setdefault((s, meth, t), []).extend(
                        time_method(models[s], meth, a.ratio, a.select, a.repeats, a.warmup))
        if a.psap_bench:
            psap_r.append(run_psap(a.psap_bench, a.psap_presets.split(","), threads, a.psap_min_time))
        load.append(os.getloadavg())
        print(f"round {rnd + 1}/{a.rounds} done, load {load[-1][0]:.2f}", file=sys.stderr, flush=True)

    print(f"torch {torch.__version__}, ratio {a.ratio}, {a.rounds} rounds x {a.repeats} steps per method; "
          f"load average {' '.join(f'{x:.2f}' for x in load[0])} at start, "
          f"{' '.join(f'{x:.2f}' for x in load[-1])} at end\n")
    print("| set | layers | MB | method | threads | ms per step, median (min-max) |")
    print("|---|---|---|---|---|---|")
    for s in sets:
        for meth in methods:
            for t in threads:
                print(f"| {s} | {len(models[s].convs)} | {models[s].bytes / 1e6:.2f} | {meth} | {t} | "
                      f"{fmt(torch_t[(s, meth, t)])} |")

    psap_med = {}
    if psap_r:
        names = sorted(set().union(*[r.keys() for r in psap_r]))
        print("\npsap_benchmarks (median over rounds of each round's median call):\n")
        print("| benchmark | us | read_us | x_read | bytes | GB/s |")
        print("|---|---|---|---|---|---|")
        for n in names:
            rows = [r[n] for r in psap_r if n in r]
            m = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
            psap_med[n] = m
            print(f"| {n} | {m['med_us']:.1f} | {m['read_us']:.1f} | {m['x_read']:.2f} | {m['bytes']:.0f} | "
                  f"{m['GB/s']:.1f} |")
        # psap's internal network <-> torch's "internal" set, streams <-> "all".
        # psap_unchecked: PSAP without its NaN/Inf scans, the work of torch's steps.
        pairs = [("sfp", "sfp"), ("sfp", "sfp_stacked"), ("psap", "sfp"), ("psap", "sfp_stacked"),
                 ("psap_unchecked", "sfp"), ("psap_unchecked", "sfp_stacked"),
                 ("l1", "ln_l1"), ("agp", "ln_l2"), ("sfp", "ln_l2"), ("psap", "ln_l2")]
        print("\ntorch / psap (how many times faster psap's step is; medians of this run):\n")
        print("| psap preset | net | torch method | threads | psap us | torch us | torch / psap | psap us by round |")
        print("|---|---|---|---|---|---|---|---|")
        for preset, meth in pairs:
            for net, s in (("internal", "internal"), ("streams", "all")):
                if s not in sets or meth not in methods:
                    continue
                for t in threads:
                    key = f"step/{preset}/{net}/threads:{t}"
                    if key not in psap_med:
                        continue
                    p = psap_med[key]["med_us"]
                    q = 1e6 * statistics.median(torch_t[(s, meth, t)])
                    by_round = " / ".join(f"{r[key]['med_us']:.1f}" for r in psap_r if key in r)
                    print(f"| {preset} | {net} | {meth} ({s}) | {t} | {p:.1f} | {q:.0f} | {q / p:.1f} | {by_round} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "ratio": a.ratio, "load": load,
                       "torch_s": {"/".join(map(str, k)): v for k, v in torch_t.items()},
                       "psap_rounds": psap_r, "psap_median": psap_med}, f, indent=1)


if __name__ == "__main__":
    main()
