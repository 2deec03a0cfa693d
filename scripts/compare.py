#!/usr/bin/python3
"""Comparison harness: PSAP and the baselines under one protocol.

Runs `psap-train prune` for every method x budget x seed on the same network,
data, seeds, epochs and FLOPs budget (../shared/ALGORITHMS.md, "Protocol"),
plus the unpruned network trained in the same loop, then writes a section of
docs/results.md (mean +- std over seeds) and PNG plots.

Resumable: a run whose result.json exists is kept and skipped; a run killed
half-way is continued with `psap-train prune --resume`. Re-running the same
command after an interruption finishes the sweep. Every finished run is also
archived as a small record under docs/results/runs/<protocol>/ (committed with
the report), so the tables survive the loss of the runs directory: a run with
a record is finished, and the report reads the record when the run directory
is gone.

  scripts/compare.py --protocol quick                 # < 90 min on 2 cores
  scripts/compare.py --protocol full                  # ResNet-20, Fashion-MNIST, 3 seeds
  scripts/compare.py --protocol ablation              # PSAP's open choices
  scripts/compare.py --protocol cifar --data-dir DIR  # ResNet-56 on CIFAR-10
  scripts/compare.py --protocol quick --report-only   # tables and plots from finished runs
  scripts/compare.py --protocol full --status         # where a sweep stands; starts and writes nothing
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Every method is a psap-train prune option list; the unpruned reference is the
# same training loop with a zero budget (nothing is ever pruned).
METHODS = {
    "unpruned": ["--preset", "static_gate", "--budget-override", "0"],
    "psap": ["--preset", "psap"],
    "static_gate": ["--preset", "static_gate"],
    "sfp": ["--preset", "sfp"],
    "asfp": ["--preset", "asfp"],
    "fpgm": ["--preset", "fpgm"],
    "l1": ["--preset", "l1"],
    "slimming": ["--preset", "slimming"],
    "taylor": ["--preset", "taylor"],
    "agp": ["--preset", "agp"],
    "random": ["--preset", "random"],
    # PSAP ablations (ALGORITHMS.md: the open choices)
    "psap-element": ["--preset", "psap", "--set", "schedule.sparsity=element"],
    "psap-proportional": ["--preset", "psap", "--set", "schedule.allocation=proportional"],
    "psap-noprotect": ["--preset", "psap", "--set", "protect.protect=false"],
    "psap-norestore": ["--preset", "psap", "--set", "protect.restore=false"],
    "psap-nopulse": ["--preset", "psap", "--set", "protect.protect=false", "--set", "protect.restore=false"],
    "psap-constant": ["--preset", "psap", "--set", "schedule.ramp=constant"],
}
BASELINES = ["static_gate", "sfp", "asfp", "fpgm", "l1", "slimming", "taylor", "random"]
DESCRIPTION = {
    "unpruned": "no pruning, same loop (budget 0)",
    "psap": "PSAP (defaults)",
    "static_gate": "control: static BN gate, ramped uniform budget",
    "sfp": "SFP", "asfp": "ASFP", "fpgm": "FPGM", "l1": "L1 (PFEC), hard",
    "slimming": "Network Slimming", "taylor": "Taylor-FO-BN", "agp": "AGP", "random": "random channels",
    "psap-element": "PSAP, element-level sparsity",
    "psap-proportional": "PSAP, proportional allocation",
    "psap-noprotect": "PSAP, no protection of active channels",
    "psap-norestore": "PSAP, no restores",
    "psap-nopulse": "PSAP, neither protection nor restores",
    "psap-constant": "PSAP, constant budget (no ramp)",
}

PROTOCOLS = {
    # Sized for < 90 minutes on 2 cores: a fixed 4000-image subset, 2 seeds.
    "quick": dict(model="resnet20", data=["fashion-mnist"], epochs=6, train_subset=4000, test_subset=2000,
                  budgets=[0.5, 0.7], seeds=[1, 2], methods=["unpruned", "psap"] + BASELINES, jobs=2, threads=1),
    # ALGORITHMS.md's default setting: ResNet-20 on Fashion-MNIST from scratch.
    "full": dict(model="resnet20", data=["fashion-mnist"], epochs=15, train_subset=0, test_subset=0,
                 budgets=[0.5, 0.7], seeds=[1, 2, 3], methods=["unpruned", "psap"] + BASELINES, jobs=2, threads=1),
    "ablation": dict(model="resnet20", data=["fashion-mnist"], epochs=6, train_subset=4000, test_subset=2000,
                     budgets=[0.7], seeds=[1, 2],
                     methods=["psap", "static_gate", "psap-element", "psap-proportional", "psap-noprotect",
                              "psap-norestore", "psap-nopulse", "psap-constant"], jobs=2, threads=1,
                     runs="compare-quick"),  # shares psap and static_gate runs with the quick protocol
    # The same command for ResNet-56 on CIFAR-10 (data supplied with --data-dir);
    # epochs default to the sfp-cifar recipe's.
    "cifar": dict(model="resnet56", data=["cifar10"], epochs=0, train_subset=0, test_subset=0,
                  budgets=[0.5, 0.7], seeds=[1, 2, 3], methods=["unpruned", "psap"] + BASELINES, jobs=1, threads=2),
}


def find_psap_train(given: str | None) -> Path:
    if given:
        return Path(given)
    for c in ["build/gcc/examples/resnet_trainer/cli/psap-train", "build/release/examples/resnet_trainer/cli/psap-train"]:
        if (ROOT / c).exists():
            return ROOT / c
    found = shutil.which("psap-train")
    if found:
        return Path(found)
    sys.exit("compare.py: psap-train not found; build it (cmake --build build/gcc) or pass --psap-train PATH")


def run_name(method: str, budget: float, seed: int) -> str:
    return f"{method}-s{seed}" if method == "unpruned" else f"{method}-b{int(round(budget * 100))}-s{seed}"


def command(a, method: str, budget: float, seed: int, out: Path) -> list[str]:
    if (out / "result.json").exists() or read_record(a, run_name(method, budget, seed)) is not None:
        return []
    if (out / "last.safetensors").exists():
        # --threads again: a run resumed on more threads than it was written
        # with is not bitwise the uninterrupted one, and side-by-side runs
        # would each grow to every core.
        return [str(a.psap_train), "prune", "--output", str(out), "--resume", "--threads", str(a.threads),
                "--progress", "none"]
    opts = list(METHODS[method])
    if "--budget-override" in opts:
        i = opts.index("--budget-override")
        budget = float(opts[i + 1])
        del opts[i:i + 2]
    cmd = [str(a.psap_train), "prune", *opts, "--budget", repr(budget), "--seed", str(seed),
           "--model", a.model, "--data", *a.data, "--threads", str(a.threads),
           "--output", str(out), "--progress", "none"]
    if a.epochs:
        cmd += ["--epochs", str(a.epochs)]
    if a.train_subset:
        cmd += ["--train-subset", str(a.train_subset)]
    if a.test_subset:
        cmd += ["--test-subset", str(a.test_subset)]
    cmd += a.extra
    return cmd


def run_all(a, runs: list[tuple[str, float, int]]) -> None:
    logs = a.runs_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    todo = []
    for m, b, s in runs:
        out = a.runs_dir / run_name(m, b, s)
        cmd = command(a, m, b, s, out)
        if not cmd:
            print(f"  kept     {out.name}")
            continue
        todo.append((out, cmd))
    print(f"compare: {len(runs) - len(todo)} finished runs kept, {len(todo)} to run, {a.jobs} at a time, "
          f"{a.threads} thread(s) each")
    running: list[tuple[subprocess.Popen, Path, float, object]] = []
    failed = []
    while todo or running:
        while todo and len(running) < a.jobs:
            out, cmd = todo.pop(0)
            log = open(logs / f"{out.name}.log", "ab")
            log.write(("\n$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            print(f"  start    {out.name}: {' '.join(cmd)}", flush=True)
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), out, time.time(), log))
        time.sleep(1.0)
        for entry in list(running):
            p, out, t0, log = entry
            if p.poll() is None:
                continue
            running.remove(entry)
            log.close()
            if p.returncode == 0 and (out / "result.json").exists():
                print(f"  done     {out.name} ({time.time() - t0:.0f} s)", flush=True)
                # Archived now, not at the report: a sweep stopped before its
                # end, or a runs directory lost, must not lose a finished run.
                archive(a, out)
            else:
                print(f"  FAILED   {out.name} (exit {p.returncode}); log: {logs / (out.name + '.log')}", flush=True)
                failed.append(out.name)
    if failed:
        print(f"compare: {len(failed)} run(s) failed: {', '.join(failed)}; rerun the command to retry them")


def read_jsonl(p: Path) -> list[dict]:
    """The records of a JSON-lines file; none when it does not exist."""
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []


def running_outputs() -> dict[Path, bool]:
    """--output directory -> stopped (SIGSTOP), for the psap-train processes alive now (Linux /proc)."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if not (args and args[0].endswith("psap-train") and "--output" in args[:-1]):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # the process ended while we looked
            continue
        found[Path(args[args.index("--output") + 1]).resolve()] = state in ("T", "t")
    return found


def status(a, runs: list[tuple[str, float, int]]) -> None:
    """Where a sweep stands: finished, running or partial (epochs done) and pending
    runs, and an estimate of what is left. Reads only; starts, archives and
    writes nothing."""
    walls, left, longest = [], 0.0, 0.0  # longest: the largest fraction of one run still to go
    counts = {"finished": 0, "running": 0, "partial": 0, "pending": 0}
    alive = running_outputs()
    for m, b, s in runs:
        name = run_name(m, b, s)
        out = a.runs_dir / name
        stopped = alive.get(out.resolve())  # None: no process writes this run
        if (out / "result.json").exists():
            r = json.loads((out / "result.json").read_text())
            state, what = "finished", f"{100 * r['accuracy']['final']:.2f}% final, {r['wall_seconds']:.0f} s"
            walls.append(r["wall_seconds"])
        elif (rec := read_record(a, name)) is not None:
            state, what = "finished", f"{100 * rec['accuracy']['final']:.2f}% final (record)"
            if rec.get("source") == "run":
                walls.append(rec["wall_seconds"])
        elif (out / "last.safetensors").exists() or stopped is not None:  # alive: before its first checkpoint
            st = json.loads((out / "settings.json").read_text()) if (out / "settings.json").exists() else {}
            total = (st.get("settings", {}).get("epochs") or 0) + (st.get("prune", {}).get("finetune_epochs") or 0)
            ms = read_jsonl(out / "metrics.jsonl")
            state = "partial" if stopped is None else "running"
            what = f"{len(ms)} of {total or '?'} epochs done"
            if ms:
                what += f", test accuracy {100 * ms[-1]['test_acc']:.2f}% after the last"
            if stopped:
                what += " (its process is stopped)"
            rest = 1 - len(ms) / total if total else 1
            left, longest = left + rest, max(longest, rest)
        else:
            state, what = "pending", ""
            left, longest = left + 1, 1.0
        counts[state] += 1
        print(f"  {state:9}{name:28}{what}".rstrip())
    print(f"compare: {counts['finished']} finished, {counts['running']} running, {counts['partial']} partial "
          f"(no process), {counts['pending']} pending ({len(runs)} runs in {a.runs_dir})")
    if walls and left > 0:
        typical = statistics.median(walls)
        sec = max(left / a.jobs, longest) * typical  # jobs share the work, but one run does not split
        print(f"compare: about {f'{sec / 3600:.1f} h' if sec >= 3600 else f'{sec / 60:.0f} min'} left at {a.jobs} "
              f"run(s) at a time "
              f"({left:.1f} runs to go, {typical:.0f} s per finished run, median of {len(walls)})")


RECORD_SCHEMA = "psap/compare-record/1"


def setting(a) -> dict:
    """What must match for a record to stand for a run of this sweep."""
    return dict(model=a.model, data=list(a.data), epochs=a.epochs, train_subset=a.train_subset,
                test_subset=a.test_subset, extra=list(a.extra))


def record_from_run(a, out: Path) -> dict:
    """The part of a finished run the report needs, small enough to commit."""
    r = json.loads((out / "result.json").read_text())
    st = r.get("settings", {})
    wanted = dict(model=a.model, data=a.data[0], epochs=a.epochs or None, train_images=a.train_subset or None,
                  test_images=a.test_subset or None)
    found = dict(model=st.get("model"), data=st.get("data"), epochs=r.get("epochs"), train_images=r.get("train_images"),
                 test_images=r.get("test_images"))
    wrong = {k: (found[k], v) for k, v in wanted.items() if v is not None and found[k] != v}
    if wrong:
        sys.exit(f"compare.py: {out} holds a run of another setting ("
                 + ", ".join(f"{k} {f!r}, this sweep {w!r}" for k, (f, w) in wrong.items())
                 + "); move it away or give this sweep its own --runs-dir")
    ms = read_jsonl(out / "metrics.jsonl")
    steps = [st for st in r.get("steps", []) if st.get("step", 0) > 0]
    rec = dict(
        schema=RECORD_SCHEMA, run=out.name, setting=setting(a), source="run",
        method=r["method"], seed=r["seed"], accuracy=r["accuracy"],
        reduction={k: r["costs"]["reduction"][k] for k in ("macs", "params")},
        churn_per_step=statistics.fmean([st["churn"] for st in steps]) if steps else 0.0,
        restores_per_step=statistics.fmean([st.get("restored", 0) for st in steps]) if steps else 0.0,
        wall_seconds=r["wall_seconds"], epochs_consumed=r["epochs_consumed"], budget_met=r["budget"]["met"],
        curve=[x["test_acc"] for x in ms if x.get("phase", "prune") == "prune"], ratios=None)
    log = out / "pruning_log.jsonl"
    if out.name.startswith("psap") and log.exists():
        steps_log = read_jsonl(log)
        if steps_log:
            rec["ratios"] = dict(groups=[g["group"] for g in steps_log[0]["groups"]],
                                 steps=[st["step"] for st in steps_log],
                                 fraction=[[round(g["pruned"] / g["size"], 6) for g in st["groups"]]
                                           for st in steps_log])
    return rec


def record_path(a, name: str) -> Path:
    return a.archive_dir / f"{name}.json"


def read_record(a, name: str) -> dict | None:
    p = record_path(a, name)
    if not p.exists():
        return None
    try:
        rec = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        sys.exit(f"compare.py: {p} is not valid JSON ({e}); delete it to run that configuration again")
    if rec.get("schema") != RECORD_SCHEMA:
        sys.exit(f"compare.py: {p} has schema {rec.get('schema')!r}, this script reads {RECORD_SCHEMA!r}; "
                 "delete it to run that configuration again")
    # A record of another setting (say --epochs 3) does not stand for this run.
    return rec if rec.get("setting") == setting(a) else None


def write_text_atomic(p: Path, text: str) -> None:
    """Temp file, fsync, rename: readers see the old file or the new one, never half of one."""
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def archive(a, out: Path) -> dict:
    """Writes the record of the finished run in `out` unless the archive holds it already."""
    rec = record_from_run(a, out)
    if read_record(a, out.name) != rec:
        write_text_atomic(record_path(a, out.name), json.dumps(rec, indent=1) + "\n")
    return rec


def load(a, method: str, budget: float, seed: int) -> dict | None:
    """A finished run's record: from its directory (archiving it) or from the
    archive. A finished run's record never changes, so it is read once per
    invocation (a report asks for each one many times); a missing one is
    looked for again, as the run may finish in the meantime."""
    cache = a.__dict__.setdefault("_records", {})
    name = run_name(method, budget, seed)
    if name not in cache:
        out = a.runs_dir / name
        rec = archive(a, out) if (out / "result.json").exists() else read_record(a, name)
        if rec is None:
            return None
        cache[name] = rec
    return cache[name]


def mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt_pct(ms: tuple[float, float], digits: int = 2) -> str:
    m, s = ms
    if math.isnan(m):
        return "–"
    return f"{100 * m:.{digits}f} ± {100 * s:.{digits}f}"


# Student's t quantile t(0.975, df) for df = 1..30 (the usual table, 3 decimals).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """Two-sided 95% quantile of Student's t with df degrees of freedom. Past
    the table: the Cornish-Fisher expansion around the normal quantile, whose
    error at df > 30 is below 1e-3."""
    if df < 1:
        raise ValueError(f"t975: df {df} must be >= 1")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def differences(a, x: tuple[str, float], y: tuple[str, float], seeds=None) -> dict[int, float]:
    """Seed -> final accuracy of run x (method, budget) minus run y's, over the
    seeds (default: all of the sweep's) where both finished."""
    d = {}
    for s in (seeds if seeds is not None else a.seeds):
        rx, ry = load(a, *x, s), load(a, *y, s)
        if rx is not None and ry is not None:
            d[s] = rx["accuracy"]["final"] - ry["accuracy"]["final"]
    return d


def paired(a, method: str, other: str, budget: float) -> dict | None:
    """Final accuracy of `method` minus `other`, seed by seed, over the seeds
    both have. The same seed gives both runs the same initial weights and the
    same data order, so the difference cancels what the seeds share; the 95%
    interval of its mean is Student's t with n - 1 degrees of freedom."""
    diffs = differences(a, (method, budget), (other, budget))
    if not diffs:
        return None
    d = list(diffs.values())
    mean = statistics.fmean(d)
    half = t975(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.nan
    return dict(by_seed=diffs, n=len(d), mean=mean, low=mean - half, high=mean + half,
                ahead=sum(x > 0 for x in d))


def drop(a, method: str, budget: float, seeds=None) -> float:
    """The unpruned run's final accuracy minus `method`'s, seed by seed, averaged
    over the seeds both have (or over `seeds`, where all of them must have
    both); with every seed finished it is the difference of the two means,
    and part-way through a sweep it still compares runs of the same seed."""
    d = differences(a, ("unpruned", 0.0), (method, budget), seeds)
    return statistics.fmean(d.values()) if d else math.nan


def over_seeds(x: dict, y: dict) -> str:
    """The caveat for two summaries' means taken over different numbers of seeds."""
    return f" (means over {x['n']} and {y['n']} seeds)" if x["n"] != y["n"] else ""


def fmt_pts(x: float) -> str:
    """A difference of accuracies (fractions) in points, signed, with a real minus sign."""
    return "–" if math.isnan(x) else f"{100 * x:+.2f}".replace("-", "−")


def summarise(a, method: str, budget: float) -> dict | None:
    rs = [r for s in a.seeds if (r := load(a, method, budget, s)) is not None]
    if not rs:
        return None
    acc = lambda k: [r["accuracy"].get(k) for r in rs]
    return dict(
        n=len(rs), runs=rs,
        before=mean_std(acc("before_last_step")), after=mean_std(acc("after_last_step")),
        recal=mean_std(acc("after_recalibration")), final=mean_std(acc("final")),
        compact=mean_std(acc("compact")),
        macs=mean_std([r["reduction"]["macs"] for r in rs]),
        params=mean_std([r["reduction"]["params"] for r in rs]),
        churn=mean_std([r["churn_per_step"] for r in rs]),
        restores=mean_std([r["restores_per_step"] for r in rs]),
        wall=mean_std([r["wall_seconds"] for r in rs]),
        epochs=rs[0]["epochs_consumed"],
        met=all(r["budget_met"] for r in rs),
        transcribed=[r["run"] for r in rs if r.get("source") == "transcribed"],
    )


def plots(a, budgets: list[float], methods: list[str], tag: str) -> list[tuple[str, str]]:
    """Draws the PNGs; returns (path, note) pairs. A plot that needs per-epoch
    data some runs no longer have (records transcribed from an earlier report)
    is not redrawn over an existing file: the file is kept and the note says so."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"compare: no plots ({e}); install python3-matplotlib")
        return []
    outdir = a.plots_dir
    outdir.mkdir(parents=True, exist_ok=True)
    made = []

    def keep_or_skip(p: Path, missing: list[str]) -> bool:
        """True when p must not be redrawn; records the kept file."""
        if not missing:
            return False
        if p.exists():
            made.append((str(p), "kept from an earlier drawing: the per-epoch and per-step data of "
                         + ", ".join(missing) + " is not archived (transcribed runs)"))
        return True

    # 1. test accuracy vs epoch, mean over seeds, one panel per budget
    p = outdir / f"{tag}-accuracy-vs-epoch.png"
    runs = {(m, b): [r for s in a.seeds if (r := load(a, m, b, s)) is not None] for b in budgets for m in methods}
    missing = sorted({r["run"] for rs in runs.values() for r in rs if not r.get("curve")})
    if not keep_or_skip(p, missing):
        fig, axes = plt.subplots(1, len(budgets), figsize=(6 * len(budgets), 4.2), squeeze=False)
        for ax, b in zip(axes[0], budgets):
            for m in methods:
                curves = [r["curve"] for r in runs[(m, b)] if r.get("curve")]
                if not curves:
                    continue
                n = min(len(c) for c in curves)
                y = [100 * statistics.fmean(c[i] for c in curves) for i in range(n)]
                style = dict(lw=2.2, color="black") if m == "psap" else dict(lw=1.0, ls="--" if m == "unpruned" else "-")
                ax.plot(range(1, n + 1), y, label=m, **style)
            ax.set_title(f"budget {int(b * 100)}% FLOPs")
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7, ncol=2)
        fig.suptitle(f"{a.model}, {a.data[0]}: test accuracy per epoch (mean over each method's finished seeds)")
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append((str(p), ""))
    # 2. PSAP's per-group ratios across pruning steps (first seed, each budget)
    for b in budgets:
        r = load(a, "psap", b, a.seeds[0]) if "psap" in methods else None
        if not r:
            continue
        p = outdir / f"{tag}-psap-ratios-b{int(b * 100)}.png"
        if keep_or_skip(p, [] if r.get("ratios") else [r["run"]]) or not r.get("ratios"):
            continue
        fig, ax = plt.subplots(figsize=(7, 4.2))
        rt = r["ratios"]
        for gi, g in enumerate(rt["groups"]):
            ax.plot(rt["steps"], [f[gi] for f in rt["fraction"]], marker=".", lw=1, label=g)
        ax.set_xlabel("pruning step")
        ax.set_ylabel("fraction of the group's channels pruned")
        ax.set_title(f"PSAP per-group ratios, budget {int(b * 100)}% FLOPs, seed {a.seeds[0]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=3)
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append((str(p), ""))
    # 3. final accuracy vs achieved FLOPs reduction, every method; a second
    # panel zooms on the methods near the best at each budget, where the
    # comparison is decided and which a collapsed method squeezes flat.
    fig, (ax, zx) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 1.2]})
    pts = {m: [(b, s["macs"][0], s["final"][0], s["final"][1]) for b in budgets if (s := summarise(a, m, b))]
           for m in methods}
    pts = {m: p for m, p in pts.items() if p}
    styles = {m: dict(color="black", marker="*", ms=12) if m == "psap" else dict(marker="o", color=f"C{i}")
              for i, m in enumerate(pts)}
    for m, pm in pts.items():
        ax.errorbar([100 * x for _, x, _, _ in pm], [100 * y for _, _, y, _ in pm], yerr=[100 * e for *_, e in pm],
                    capsize=3, lw=1, label=m, **styles[m])
    ax.set_xlabel("FLOPs (MACs) removed, psap's counter (%)")
    ax.set_ylabel("final test accuracy (%), mean ± std")
    ax.set_title(f"{a.model}, {a.data[0]}: accuracy vs FLOPs reduction", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    window = 1.0  # points below the best mean at that budget
    near = [m for m in pts if m != "unpruned"]
    best = {b: max((y for m in near for bb, _, y, _ in pts[m] if bb == b), default=0.0) for b in budgets}
    labelled, off = set(), set()
    for k, m in enumerate(near):
        off_m = 0.06 * (k - (len(near) - 1) / 2)  # side by side, so error bars do not overlap
        for b, _, y, e in pts[m]:
            if 100 * (best[b] - y) > window:
                off.add(m)
                continue
            zx.errorbar([budgets.index(b) + off_m], [100 * y], yerr=[100 * e], capsize=2, lw=1, ls="none",
                        label=None if m in labelled else m, **styles[m])
            labelled.add(m)
    if "unpruned" in pts:
        u = pts["unpruned"][0][2]
        zx.axhline(100 * u, ls="--", lw=1, color=styles["unpruned"]["color"], label="unpruned (mean)")
    zx.set_xticks(range(len(budgets)), [f"{int(b * 100)}% budget" for b in budgets])
    zx.set_xlim(-0.6, len(budgets) - 0.4)
    zx.set_ylabel("final test accuracy (%), mean ± std")
    title = f"zoom: within {window:g} point of the best pruned mean"
    if off:
        title += " (off scale: " + ", ".join(sorted(off)) + ")"
    zx.set_title(title, fontsize=10)
    zx.grid(alpha=0.3, axis="y")
    zx.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    p = outdir / f"{tag}-accuracy-vs-flops.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    made.append((str(p), ""))
    return made


def report(a, tag: str, argv: list[str]) -> str:
    methods = [m for m in a.methods]
    unpruned = summarise(a, "unpruned", 0.0) if "unpruned" in methods else None
    lines = []
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    lines += [
        f"Command: `{' '.join(['scripts/compare.py'] + [x for x in argv if x != '--report-only'])}`"
        + (" (tables and plots redrawn from its finished runs with `--report-only`)" if a.report_only else "")
        + f" — {when}, commit {commit}, {cpu}, "
        f"{os.cpu_count()} CPUs, {a.jobs} run(s) at a time with {a.threads} thread(s) each.",
        "",
        f"Setting: {a.model} on {' '.join(a.data)}, from scratch, {a.epochs or 'recipe'} epochs "
        f"(training images: {a.train_subset or 'all'}, test images: {a.test_subset or 'all'}), "
        f"seeds {', '.join(map(str, a.seeds))}. Accuracies are test accuracy in percent, mean ± std over seeds: "
        "*before* the last pruning step, *after* it, after batch-norm *recal*ibration (16 batches, masks fixed) "
        "and of the *compact* network; *drop vs unpruned*: the unpruned run's final accuracy minus the method's, "
        "seed by seed, averaged. Reductions are psap's MAC and parameter counter. Churn: channels whose "
        "mask changed per step; restores per step; wall: seconds per run.",
        "",
    ]
    if unpruned:
        lines += [f"Unpruned, same loop: **{fmt_pct(unpruned['final'])}** ({unpruned['n']} seeds, "
                  f"{unpruned['wall'][0]:.0f} s per run).", ""]
    verdicts = []
    for b in a.budgets:
        rows = [(m, s) for m in methods if m != "unpruned" and (s := summarise(a, m, b))]
        if not rows:
            continue
        lines += [f"#### Budget {int(b * 100)}% of FLOPs", "",
                  "| method | n | before last step | after last step | after recal | compact | drop vs unpruned | "
                  "FLOPs ↓ | params ↓ | churn/step | restores/step | wall s | epochs |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for m, s in sorted(rows, key=lambda ms: -ms[1]["final"][0]):
            dm = drop(a, m, b) if unpruned else math.nan
            dcell = "–" if math.isnan(dm) else f"{100 * dm:.2f}"
            name = f"**{m}**" if m == "psap" else m
            lines.append(f"| {name} | {s['n']} | {fmt_pct(s['before'])} | {fmt_pct(s['after'])} | {fmt_pct(s['recal'])} | "
                         f"{fmt_pct(s['compact'])} | {dcell} | {100 * s['macs'][0]:.1f} | {100 * s['params'][0]:.1f} | "
                         f"{s['churn'][0]:.1f} | {s['restores'][0]:.2f} | {s['wall'][0]:.0f} | {s['epochs']} |"
                         + ("" if s["met"] else " (budget not met)"))
        lines.append("")
        ns = sorted({s["n"] for _, s in rows} | ({unpruned["n"]} if unpruned else set()))
        if len(ns) > 1:
            lines += ["Part-way through the sweep the rows hold different numbers of seeds (n), so their means "
                      "are over different seeds and do not compare directly; *drop vs unpruned* pairs each run "
                      "with the unpruned run of its own seed, and the seed-by-seed table below compares PSAP with "
                      "each method on the seeds both have.", ""]
        d = dict(rows)
        pairs = [(m, pr) for m, _ in sorted(rows, key=lambda ms: -ms[1]["final"][0])
                 if m != "psap" and (pr := paired(a, "psap", m, b))] if "psap" in d else []
        if pairs:
            lines += ["PSAP minus each method, seed by seed (final accuracy, points; the same seed means the same "
                      "initial weights and data order), the mean difference with its 95% t-interval, and the "
                      "seeds in which PSAP is ahead:", "",
                      "| PSAP minus | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean | 95% interval | PSAP ahead |",
                      "|---|" + "---|" * len(a.seeds) + "---|---|---|"]
            for m, pr in pairs:
                cells = [fmt_pts(pr["by_seed"][s]) if s in pr["by_seed"] else "" for s in a.seeds]
                ci = f"[{fmt_pts(pr['low'])}, {fmt_pts(pr['high'])}]" if pr["n"] > 1 else "– (one seed)"
                lines.append(f"| {m} | " + " | ".join(cells) + f" | {fmt_pts(pr['mean'])} | {ci} | "
                             f"{pr['ahead']} of {pr['n']} |")
            lines.append("")
        if "psap" in d:
            base = [(m, d[m]) for m in BASELINES if m in d and m != "static_gate"]
            ctrl = d.get("static_gate")
            if base:
                best_m, best = max(base, key=lambda ms: ms[1]["final"][0])
                ok = d["psap"]["final"][0] >= best["final"][0]
                verdicts.append(f"* {int(b * 100)}%: PSAP {fmt_pct(d['psap']['final'])} vs the best baseline, "
                                f"{best_m}, {fmt_pct(best['final'])}{over_seeds(d['psap'], best)}: "
                                f"goal {'**met**' if ok else '**not met**'}.")
                pr = dict(pairs).get(best_m)
                if pr and pr["n"] > 1:
                    verdicts.append(
                        f"* {int(b * 100)}%: seed by seed, PSAP minus {best_m} is {fmt_pts(pr['mean'])} points, "
                        f"95% interval [{fmt_pts(pr['low'])}, {fmt_pts(pr['high'])}] over {pr['n']} seeds: "
                        + ("the interval holds 0, so these seeds do not separate the two."
                           if pr["low"] <= 0 <= pr["high"] else
                           "PSAP is behind beyond seed noise." if pr["high"] < 0 else "PSAP is ahead beyond seed noise."))
            if ctrl:
                verdicts.append(f"* {int(b * 100)}%: PSAP vs the static-gate control {fmt_pct(ctrl['final'])}"
                                f"{over_seeds(d['psap'], ctrl)}: "
                                f"{'above' if d['psap']['final'][0] >= ctrl['final'][0] else 'below'}.")
            if unpruned and abs(b - 0.7) < 1e-9 and "sfp" in d:
                # On the seeds where PSAP, SFP and the unpruned run all finished.
                common = [s for s in a.seeds if all(load(a, m, bb, s) is not None
                                                    for m, bb in (("psap", b), ("sfp", b), ("unpruned", 0.0)))]
                if common:
                    dp, ds = drop(a, "psap", b, common), drop(a, "sfp", b, common)
                    over = "" if len(common) == len(a.seeds) else \
                        f" (seed{'s' if len(common) > 1 else ''} {', '.join(map(str, common))})"
                    verdicts.append(f"* 70%: PSAP's drop {100 * dp:.2f} points, SFP's {100 * ds:.2f}{over}: "
                                    f"goal (≤ half of SFP's) {'**met**' if dp <= 0.5 * ds else '**not met**'}.")
            pv = [(m, s) for m, s in rows if m.startswith("psap")]
            if len(pv) > 1:
                bm, bs = max(pv, key=lambda ms: ms[1]["final"][0])
                verdicts.append(f"* {int(b * 100)}%: the best PSAP variant is {bm} ({DESCRIPTION.get(bm, bm)}), "
                                f"{fmt_pct(bs['final'])}.")
    if verdicts:
        lines += ["Against the goals (computed from the table):", ""] + verdicts + [""]
    transcribed = sorted({n for b in a.budgets for m in methods
                          if (s := summarise(a, m, 0.0 if m == "unpruned" else b)) for n in s["transcribed"]})
    if transcribed:
        lines += ["Transcribed rows: the runs " + ", ".join(transcribed) + " finished before run records were "
                  "archived and their directories were lost; their records (`source: transcribed`) carry the "
                  "figures of the earlier report at the precision it printed, without per-epoch data.", ""]
    for p, note in plots(a, a.budgets, methods, tag):
        rel = os.path.relpath(p, a.report.parent)
        lines += [f"![{Path(p).stem}]({rel})", ""] + ([f"*{Path(p).name}: {note}.*", ""] if note else [])
    return "\n".join(lines)


def write_section(path: Path, tag: str, body: str) -> None:
    """Replaces the text between this protocol's markers (or appends it); atomic."""
    begin, end = f"<!-- compare:{tag}:begin -->", f"<!-- compare:{tag}:end -->"
    text = path.read_text() if path.exists() else "# Results\n\n"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        i, j = text.index(begin), text.index(end) + len(end)
        text = text[:i] + block + text[j:]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    write_text_atomic(path, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="quick")
    ap.add_argument("--methods", nargs="+", choices=sorted(METHODS), help="default: the protocol's")
    ap.add_argument("--budgets", nargs="+", type=float)
    ap.add_argument("--seeds", nargs="+", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--train-subset", type=int)
    ap.add_argument("--test-subset", type=int)
    ap.add_argument("--model")
    ap.add_argument("--data-dir", help="directory of the data set (cifar: the cifar-10-batches-bin folder)")
    ap.add_argument("--jobs", type=int, help="runs at a time")
    ap.add_argument("--threads", type=int, help="threads per run")
    ap.add_argument("--runs-dir", type=Path, help="default runs/compare-<protocol>")
    ap.add_argument("--report", type=Path, default=ROOT / "docs/results.md")
    ap.add_argument("--plots-dir", type=Path, default=ROOT / "docs/results")
    ap.add_argument("--archive-dir", type=Path, help="run records; default <plots-dir>/runs/<protocol>")
    ap.add_argument("--psap-train")
    ap.add_argument("--report-only", action="store_true", help="no runs: tables and plots from finished runs")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    ap.add_argument("--status", action="store_true",
                    help="where the sweep stands (finished, running, partial, pending runs); starts and writes nothing")
    ap.add_argument("extra", nargs="*", help="after --: more psap-train prune options for every run")
    argv = sys.argv[1:]
    a = ap.parse_args()
    p = PROTOCOLS[a.protocol]
    for k in ["methods", "budgets", "seeds", "epochs", "train_subset", "test_subset", "model", "jobs", "threads"]:
        if getattr(a, k) is None:
            setattr(a, k, p[k])
    a.data = list(p["data"]) + ([a.data_dir] if a.data_dir else [])
    if a.protocol == "cifar" and not a.data_dir:
        ap.error("--protocol cifar needs --data-dir (the folder with data_batch_1.bin .. test_batch.bin)")
    if any(not 0 <= b < 1 for b in a.budgets):
        ap.error("budgets must be fractions in [0, 1)")
    a.runs_dir = (a.runs_dir or ROOT / "runs" / p.get("runs", f"compare-{a.protocol}")).resolve()
    # Protocols sharing a runs directory (ablation reuses quick's) share records.
    a.archive_dir = (a.archive_dir or a.plots_dir / "runs" / p.get("runs", a.protocol).removeprefix("compare-")).resolve()
    if not a.status and not a.report_only:  # a report needs the records, not the trainer
        a.psap_train = find_psap_train(a.psap_train).resolve()
    if not a.report_only and not a.dry_run and not a.status:
        # A private copy: rebuilding the tree during a long sweep must not
        # change the binary half-way through it.
        # Copied to a temporary name and renamed: runs still using the old
        # copy keep it.
        (a.runs_dir / "bin").mkdir(parents=True, exist_ok=True)
        tmp = a.runs_dir / "bin" / f".psap-train.{os.getpid()}"
        shutil.copy2(a.psap_train, tmp)
        os.replace(tmp, a.runs_dir / "bin" / "psap-train")
        a.psap_train = a.runs_dir / "bin" / "psap-train"
    runs = []
    for s in a.seeds:  # seed-major: an interrupted sweep still has whole seeds
        for b in a.budgets:
            for m in a.methods:
                if m == "unpruned":
                    if b == a.budgets[0]:
                        runs.append((m, 0.0, s))
                else:
                    runs.append((m, b, s))
    if a.status:
        status(a, runs)
        return
    if a.dry_run:
        for m, b, s in runs:
            cmd = command(a, m, b, s, a.runs_dir / run_name(m, b, s))
            print(" ".join(cmd) if cmd else f"# kept {run_name(m, b, s)}")
        return
    if not a.report_only:
        t0 = time.time()
        run_all(a, runs)
        print(f"compare: sweep took {time.time() - t0:.0f} s")
    write_section(a.report, a.protocol, report(a, a.protocol, argv))
    print(f"compare: wrote the '{a.protocol}' section of {a.report} and plots under {a.plots_dir}")


if __name__ == "__main__":
    main()
