#!/usr/bin/env python3
"""Inference speedup of compaction: psap-train's masked network against its
compact one, next to Torch-Pruning on the same architecture at the same MAC
reduction.

For every budget (--budgets, FLOP fractions) and group mode (--groups):

1. `psap-train prune` runs PSAP (or --preset) briefly on a few hundred images
   (accuracy is irrelevant here, only the masks are needed) on ResNet-20 with
   option-B shortcuts (--model, --shortcut) at the data set's input size
   (Fashion-MNIST: 1x28x28), giving final.safetensors (masked, full size) and
   compact.safetensors.
2. psap_trainer_bench --checkpoint times eval-mode inference of each
   (synthetic batch of --batch images, --threads OpenMP threads), --rounds
   rounds alternating masked / compact, each run a fresh process.
3. A worker process (PyTorch with OPENBLAS_NUM_THREADS=1 and glibc malloc
   keeping its memory, as scripts/bench_throughput.py runs it; both sides with
   OMP_WAIT_POLICY=passive, see OMP_ENV below) builds the same
   ResNet in PyTorch (scripts/torch_models.py), prunes a copy with
   Torch-Pruning's MagnitudePruner (L1 magnitude, one step) at the per-layer
   ratio whose MAC reduction is closest to the one psap's compact network
   reached, and times torch.no_grad() inference of the full and the pruned
   model at torch.set_num_threads(--threads), rounds alternating.

Group modes: `internal` prunes each block's inner channels only (psap-train's
default; Torch-Pruning with the stem, every conv2, the downsample convs and
the classifier in ignored_layers, which leaves exactly the conv1 -> conv2
groups), `internal+stream` also the residual streams (psap-train --groups
internal+stream; Torch-Pruning with only the classifier ignored).

MACs are counted the same way on both sides: convolutions and the classifier
(psap: the bench binary's total_macs; PyTorch: forward hooks on Conv2d and
Linear). Speedup = median img/s of the pruned network / median img/s of the
full one, both from the same rounds; in brackets the same ratio of images
per CPU-second (process CPU time), which load from other processes disturbs
less than wall-clock time. The table, the exact command and
/proc/loadavg before and after go to stdout (Markdown).

  .venv/bin/python3 examples/resnet_trainer/scripts/bench_compaction.py \\
      --psap-train build/gcc/examples/resnet_trainer/cli/psap-train \\
      --bench build/gcc/examples/resnet_trainer/psap_trainer_bench

Needs torch and torch_pruning in this interpreter (bash scripts/setup.sh
--python puts torch-pruning into .venv, which sees Debian's torch).
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import bench_throughput  # noqa: E402  (same directory: the script's own path is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
# Both sides run with OMP_WAIT_POLICY=passive: on a loaded machine an OpenMP
# thread spinning at a barrier while its partner is descheduled costs PyTorch
# (one parallel region per op) up to 10x here; psap's kernels suffer less.
OMP_ENV = {"OMP_WAIT_POLICY": "passive"}
# PyTorch at its best on this machine, as for the throughput comparison.
TORCH_ENV = dict(OMP_ENV, **bench_throughput.TORCH_ENV)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().strip()


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit("bench_compaction: %s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode, p.stderr[-3000:]))
    return p.stdout


# ----------------------------------------------------------------- PyTorch side (worker process)

def torch_macs(net, shape):
    import torch
    import torch.nn as nn
    total = [0]

    def hook(m, _inputs, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += m.in_features * m.out_features

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total[0]


def tp_prune(net, shape, ratio, groups):
    import copy

    import torch
    import torch_pruning as tp
    m = copy.deepcopy(net)
    ignored = [m.fc]
    if groups == "internal":
        blocks = [b for s in range(m.stages) for b in getattr(m, "layer%d" % (s + 1))]
        ignored += [m.conv1] + [b.conv2 for b in blocks] + [b.downsample[0] for b in blocks if b.downsample is not None]
    pruner = tp.pruner.MagnitudePruner(m, torch.randn(1, *shape), importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=ratio, ignored_layers=ignored)
    pruner.step()
    return m


def torch_worker(a):
    import torch
    import torch_pruning  # noqa: F401
    sys.path.insert(0, HERE)
    from torch_models import make

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = json.loads(a.torch_config)
    shape = (cfg["in_channels"], cfg["input_size"][0], cfg["input_size"][1])
    net = make(cfg).eval()
    base = torch_macs(net, shape)
    # The per-layer ratio whose MAC reduction is closest to the target (bisection; reduction grows with the ratio).
    lo, hi, best = 0.0, 0.99, None
    for _ in range(14):
        mid = (lo + hi) / 2
        red = 1 - torch_macs(tp_prune(net, shape, mid, a.groups), shape) / base
        if best is None or abs(red - a.target) < abs(best[1] - a.target):
            best = (mid, red)
        lo, hi = (mid, hi) if red < a.target else (lo, mid)
    ratio, _ = best
    pruned = tp_prune(net, shape, ratio, a.groups).eval()
    pruned_macs = torch_macs(pruned, shape)
    x = torch.randn(a.batch, *shape)
    with torch.no_grad():
        same_shape = pruned(x[:2]).shape == net(x[:2]).shape

    def img_per_s(model):
        with torch.no_grad():
            for _ in range(a.warmup):
                model(x)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(a.iters):
                model(x)
            n = a.batch * a.iters
            return n / (time.perf_counter() - t0), n / (time.process_time() - c0)

    full, comp = [], []
    for r in range(a.rounds):
        pair = [(full, net), (comp, pruned)]
        for out, model in (pair if r % 2 == 0 else pair[::-1]):
            out.append(img_per_s(model))
    print(json.dumps({"ratio": ratio, "macs_full": base, "macs_pruned": pruned_macs, "same_output_shape": same_shape,
                      "img_per_s_full": [v[0] for v in full], "img_per_s_pruned": [v[0] for v in comp],
                      "img_per_cpu_s_full": [v[1] for v in full], "img_per_cpu_s_pruned": [v[1] for v in comp],
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


# ----------------------------------------------------------------- psap side

def psap_prune(a, budget, groups, out):
    cmd = [a.psap_train, "prune", "--model", a.model, "--shortcut", a.shortcut, "--preset", a.preset,
           "--budget", str(budget), "--groups", groups, "--epochs", str(a.epochs), "--train-subset",
           str(a.train_subset), "--test-subset", "64", "--batch-size", "64", "--threads", str(a.threads),
           "--seed", str(a.seed), "--progress", "none", "--output", out, "--data"] + a.data
    run(cmd)
    with open(os.path.join(out, "result.json")) as f:
        return json.load(f)


def psap_time(a, ckpt):
    out = run([a.bench, "--checkpoint", ckpt, "--mode", "infer", "--batch", str(a.batch), "--threads", str(a.threads),
               "--warmup", str(a.warmup), "--iters", str(a.iters)], env=dict(os.environ, **OMP_ENV))
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--psap-train", help="psap-train binary")
    ap.add_argument("--bench", help="psap_trainer_bench binary (built with checkpoint support)")
    ap.add_argument("--budgets", default="0.5,0.7", help="FLOP budgets (fractions of MACs to remove)")
    ap.add_argument("--groups", default="internal", help="comma list of group modes: internal, internal+stream")
    ap.add_argument("--preset", default="psap")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--shortcut", default="B", choices=["A", "B"], help="B: Torch-Pruning needs the conv shortcut")
    ap.add_argument("--data", nargs="+", default=["fashion-mnist"], help="psap-train --data NAME [DIR]")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-subset", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds per side (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=8, help="timed batches per psap timing run")
    ap.add_argument("--torch-warmup", type=int, default=2)
    ap.add_argument("--torch-iters", type=int, default=8, help="timed batches per PyTorch timing run")
    ap.add_argument("--workdir", help="where the prune runs go (default: a temporary directory)")
    ap.add_argument("--json", help="also write every measurement here")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torch-config", help=argparse.SUPPRESS)
    ap.add_argument("--target", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        a.groups = a.groups.split(",")[0]
        return torch_worker(a)
    if not a.psap_train or not a.bench:
        ap.error("--psap-train and --bench are required")
    for exe in (a.psap_train, a.bench):
        if not os.access(exe, os.X_OK):
            ap.error("%s is not an executable" % exe)
    try:
        import torch  # noqa: F401
        import torch_pruning  # noqa: F401
    except ImportError as e:
        sys.exit("bench_compaction: needs torch and torch_pruning in %s (bash scripts/setup.sh --python, then "
                 ".venv/bin/python3): %s" % (sys.executable, e))
    budgets = [float(b) for b in a.budgets.split(",")]
    groups_list = a.groups.split(",")
    for g in groups_list:
        if g not in ("internal", "internal+stream"):
            ap.error("--groups: %r is neither internal nor internal+stream" % g)
    command = " ".join(shlex.quote(x) for x in [sys.executable] + sys.argv)
    load_start, t_start = loadavg(), time.time()
    work = a.workdir or tempfile.mkdtemp(prefix="bench_compaction-")
    os.makedirs(work, exist_ok=True)
    rows, raw = [], []
    for groups in groups_list:
        for budget in budgets:
            out = os.path.join(work, "%s-%s-%g" % (a.preset, groups.replace("+", "_"), budget))
            r = psap_prune(a, budget, groups, out)
            full_ck, comp_ck = os.path.join(out, "final.safetensors"), os.path.join(out, "compact.safetensors")
            full, comp = [], []
            for i in range(a.rounds):
                pair = [(full, full_ck), (comp, comp_ck)]
                for dst, ck in (pair if i % 2 == 0 else pair[::-1]):
                    dst.append(psap_time(a, ck))
            macs_full, macs_comp = full[0]["macs"], comp[0]["macs"]
            psap_red = 1 - macs_comp / macs_full
            worker = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--torch-config",
                      json.dumps(r["model_config"]), "--target", repr(psap_red), "--groups", groups,
                      "--threads", str(a.threads), "--batch", str(a.batch), "--rounds", str(a.rounds),
                      "--warmup", str(a.torch_warmup), "--iters", str(a.torch_iters), "--seed", str(a.seed)]
            t = json.loads(run(worker, env=dict(os.environ, **TORCH_ENV)).strip().splitlines()[-1])
            if not t["same_output_shape"]:
                sys.exit("bench_compaction: the Torch-Pruning model changed the output shape")
            pf = statistics.median(x["img_per_s"] for x in full)
            pc = statistics.median(x["img_per_s"] for x in comp)
            tf, tc = statistics.median(t["img_per_s_full"]), statistics.median(t["img_per_s_pruned"])
            pcpu = (statistics.median(x["img_per_cpu_s"] for x in comp) /
                    statistics.median(x["img_per_cpu_s"] for x in full))
            tcpu = statistics.median(t["img_per_cpu_s_pruned"]) / statistics.median(t["img_per_cpu_s_full"])
            row = {"groups": groups, "budget": budget, "budget_met": r["budget"]["met_by_compact"],
                   "psap_mac_reduction": psap_red, "psap_macs": [macs_full, macs_comp],
                   "psap_img_per_s": [pf, pc], "psap_speedup": pc / pf, "psap_speedup_cpu": pcpu,
                   "psap_runs_full": [x["img_per_s"] for x in full], "psap_runs_compact": [x["img_per_s"] for x in comp],
                   "tp_ratio": t["ratio"], "tp_mac_reduction": 1 - t["macs_pruned"] / t["macs_full"],
                   "tp_macs": [t["macs_full"], t["macs_pruned"]], "torch_img_per_s": [tf, tc], "tp_speedup": tc / tf, "tp_speedup_cpu": tcpu,
                   "torch_runs_full": t["img_per_s_full"], "torch_runs_pruned": t["img_per_s_pruned"],
                   "psap_cpu_runs_full": [x["img_per_cpu_s"] for x in full],
                   "psap_cpu_runs_compact": [x["img_per_cpu_s"] for x in comp],
                   "torch_cpu_runs_full": t["img_per_cpu_s_full"], "torch_cpu_runs_pruned": t["img_per_cpu_s_pruned"],
                   "torch": t["torch"], "input": full[0]["input"], "load": loadavg()}
            rows.append(row)
            raw.append(row)
            print("%-15s budget %.2f: psap MACs -%.1f%% %.0f -> %.0f img/s (x%.2f, per CPU-s x%.2f) | torch-pruning "
                  "MACs -%.1f%% %.0f -> %.0f img/s (x%.2f, per CPU-s x%.2f) | load %s"
                  % (groups, budget, 100 * psap_red, pf, pc, pc / pf, pcpu, 100 * row["tp_mac_reduction"], tf, tc,
                     tc / tf, tcpu, loadavg()),
                  file=sys.stderr, flush=True)
    load_end = loadavg()
    shape = rows[0]["input"] if rows else "?"
    print("Command: `%s`\n" % command)
    print("%s (option %s, input %s), %s preset (%d epochs on %d images, seed %d), batch %d, %d threads, %d rounds "
          "per side (median img/s; psap %d timed batches per run, PyTorch %d); %.0f s; /proc/loadavg at start `%s`, "
          "at end `%s`.\n"
          % (a.model, a.shortcut, shape, a.preset, a.epochs, a.train_subset, a.seed, a.batch, a.threads, a.rounds,
             a.iters, a.torch_iters, time.time() - t_start, load_start, load_end))
    print("| groups | budget | psap MAC reduction | psap img/s masked → compact | psap speedup (per CPU-s) | "
          "Torch-Pruning MAC reduction | PyTorch img/s full → pruned | Torch-Pruning speedup (per CPU-s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %.0f %% | %.1f %% | %.0f → %.0f | %.2f× (%.2f×) | %.1f %% (ratio %.3f) | %.0f → %.0f | "
              "%.2f× (%.2f×) |"
              % (r["groups"], 100 * r["budget"], 100 * r["psap_mac_reduction"], r["psap_img_per_s"][0],
                 r["psap_img_per_s"][1], r["psap_speedup"], r["psap_speedup_cpu"], 100 * r["tp_mac_reduction"],
                 r["tp_ratio"], r["torch_img_per_s"][0], r["torch_img_per_s"][1], r["tp_speedup"],
                 r["tp_speedup_cpu"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"command": command, "load_start": load_start, "load_end": load_end, "rows": raw}, f, indent=1)


if __name__ == "__main__":
    main()
