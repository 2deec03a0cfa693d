"""The comparison harness survives the loss of its runs directory.

scripts/compare.py archives every finished run as a small record next to the
report. This test runs a tiny sweep (ResNet-8, 256 images, 1 epoch: PSAP and
the unpruned reference), checks each record against the run's own
result.json and metrics.jsonl, deletes the runs directory, and runs the same
command again: nothing may be rerun and the tables must come out the same.
Each run's record must be written when the run finishes, before the next run
starts, so that a sweep stopped half-way keeps its finished runs.
A record of another setting (more epochs) must not stand for a run, a run
directory of another setting is refused, and a corrupt record must stop the
script with a message naming the file. `--status` lists finished, running, partial
and pending runs and writes nothing.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from psap_train_testlib import FASHION_DIR, SKIP, check, fail, fresh_dir, read_metrics  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
COMPARE = os.path.join(ROOT, "scripts", "compare.py")


def tables(report):
    """The report's table and verdict lines (the Command line carries a time stamp)."""
    with open(report) as f:
        return [l for l in f.read().splitlines() if l.startswith("|") or l.startswith("* ") or l.startswith("Unpruned")]


def compare(base, *more, expect_rc=0):
    cmd = [sys.executable, COMPARE] + base + list(more)
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    print(p.stdout, flush=True)
    if p.returncode != expect_rc:
        fail("compare.py exited %d, expected %d" % (p.returncode, expect_rc))
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--psap-train", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    if not os.path.exists(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")):
        print("skipped: %s is not installed (compare.py's quick protocol uses it); "
              "apt-get install dataset-fashion-mnist" % FASHION_DIR)
        sys.exit(SKIP)
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    work = fresh_dir(a.workdir)
    runs, plots, report = (os.path.join(work, x) for x in ("runs", "plots", "results.md"))
    archive = os.path.join(plots, "runs", "quick")
    base = ["--protocol", "quick", "--methods", "unpruned", "psap", "--budgets", "0.5", "--seeds", "1",
            "--model", "resnet8", "--epochs", "1", "--train-subset", "256", "--test-subset", "64",
            "--jobs", "2", "--threads", "1", "--runs-dir", runs, "--report", report, "--plots-dir", plots,
            "--psap-train", a.psap_train]
    print("seed 1 (the sweep's), ResNet-8, 256 training images, 1 epoch", flush=True)

    # The first sweep runs one job at a time through a wrapper that notes
    # which records exist when each run starts.
    seen = os.path.join(work, "seen.txt")
    wrapper = os.path.join(work, "psap-train-wrapper")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nprev=; out=\nfor x in "$@"; do [ "$prev" = --output ] && out=$x; prev=$x; done\n'
                'echo "$(basename "$out"):$(ls "%s" 2>/dev/null | tr "\\n" " ")" >> "%s"\nexec "%s" "$@"\n'
                % (archive, seen, os.path.abspath(a.psap_train)))
    os.chmod(wrapper, 0o755)
    out = compare(base, "--jobs", "1", "--psap-train", wrapper)
    check("0 finished runs kept, 2 to run" in out, "the first sweep should run both configurations")
    with open(seen) as f:
        starts = [l.rstrip("\n").split(":", 1) for l in f if l.strip()]
    print("records present as each run started: %r" % starts, flush=True)
    check([r for r, _ in starts] == ["unpruned-s1", "psap-b50-s1"], "runs started: %r" % starts)
    check(starts[0][1].split() == [] and starts[1][1].split() == ["unpruned-s1.json"],
          "the first run's record was not written before the second run started: %r" % starts)
    first = tables(report)
    check(any(l.startswith("| **psap**") for l in first), "no PSAP row in the first report")

    for name in ("psap-b50-s1", "unpruned-s1"):
        path = os.path.join(archive, name + ".json")
        check(os.path.exists(path), "no record %s" % path)
        with open(path) as f:
            rec = json.load(f)
        with open(os.path.join(runs, name, "result.json")) as f:
            res = json.load(f)
        check(rec["source"] == "run" and rec["run"] == name, "record %s: source/run fields %r" % (name, rec))
        check(rec["accuracy"] == res["accuracy"], "record %s: accuracies differ from result.json" % name)
        check(rec["reduction"]["macs"] == res["costs"]["reduction"]["macs"], "record %s: MAC reduction differs" % name)
        check(rec["epochs_consumed"] == res["epochs_consumed"] == 1, "record %s: epochs %r" % (name, rec["epochs_consumed"]))
        curve = [m["test_acc"] for m in read_metrics(os.path.join(runs, name, "metrics.jsonl"))
                 if m.get("phase", "prune") == "prune"]
        check(curve and rec["curve"] == curve, "record %s: curve %r, metrics.jsonl %r" % (name, rec["curve"], curve))
        if name.startswith("psap"):
            with open(os.path.join(runs, name, "pruning_log.jsonl")) as f:
                log = [json.loads(l) for l in f if l.strip()]
            rt = rec["ratios"]
            check(rt and rt["steps"] == [st["step"] for st in log], "record %s: ratio steps differ from the log" % name)
            last = log[-1]["groups"]
            check(all(abs(x - g["pruned"] / g["size"]) < 1e-6 for x, g in zip(rt["fraction"][-1], last)),
                  "record %s: last step's fractions differ from the log" % name)
        else:
            check(rec["ratios"] is None, "record %s: ratios for a method that is not PSAP" % name)

    # --status reads the sweep without running or writing anything: the two
    # finished runs, a partial run (faked: a checkpoint, 1 of 4 epochs) and a
    # pending one, with an estimate of what is left.
    partial = os.path.join(runs, "unpruned-s2")
    os.makedirs(partial)
    open(os.path.join(partial, "last.safetensors"), "w").close()
    with open(os.path.join(partial, "settings.json"), "w") as f:
        json.dump({"settings": {"epochs": 4}, "prune": {"finetune_epochs": 0}}, f)
    with open(os.path.join(partial, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"epoch": 1, "phase": "prune", "test_acc": 0.5}) + "\n")
    listing = lambda: sorted((d, sorted(fs)) for d, _, fs in os.walk(work))
    before = (listing(), os.path.getmtime(report))
    out = compare(base + ["--seeds", "1", "2", "--status"])  # the later --seeds wins
    check("finished unpruned-s1" in out and "finished psap-b50-s1" in out, "--status: finished runs not listed")
    check("partial  unpruned-s2                 1 of 4 epochs done, test accuracy 50.00% after the last" in out,
          "--status: the partial run's epochs")
    check("pending  psap-b50-s2" in out, "--status: the pending run")
    check("2 finished, 0 running, 1 partial (no process), 1 pending" in out
          and "min left at 2 run(s) at a time (1.8 runs to go" in out, "--status: the summary")
    check((listing(), os.path.getmtime(report)) == before, "--status wrote or removed files")
    # A process writing the partial run makes it "running"; stopped, it says so.
    # The process is Python under the name psap-train (a symbolic link), so
    # /proc shows the name and the --output argument a real run would have.
    fake = os.path.join(work, "bin", "psap-train")
    os.makedirs(os.path.dirname(fake), exist_ok=True)
    os.symlink(sys.executable, fake)
    # A second one stands for a run started moments ago, before its first checkpoint.
    procs = [subprocess.Popen([fake, "-c", "import time; time.sleep(120)", "--output", d])
             for d in (partial, os.path.join(runs, "psap-b50-s2"))]
    try:
        out = compare(base + ["--seeds", "1", "2", "--status"])
        check("running  unpruned-s2" in out and "running  psap-b50-s2                 0 of ? epochs done" in out
              and "2 running, 0 partial" in out, "--status: the live runs")
        procs[0].send_signal(signal.SIGSTOP)
        out = compare(base + ["--seeds", "1", "2", "--status"])
        check("after the last (its process is stopped)" in out, "--status: the stopped run")
    finally:
        for p in procs:
            p.kill()
            p.wait()
    os.remove(fake)
    shutil.rmtree(partial)

    # The runs directory is lost: the same command reruns nothing and reports the same tables.
    shutil.rmtree(runs)
    out = compare(base)
    check("2 finished runs kept, 0 to run" in out, "after losing the runs directory the sweep ran again")
    check(tables(report) == first, "tables differ after the runs directory was lost:\n%s\n---\n%s"
          % ("\n".join(first), "\n".join(tables(report))))

    # Another setting: the record does not stand for the run.
    out = compare(base + ["--epochs", "2", "--dry-run"])
    check("# kept psap-b50-s1" not in out and "--epochs 2" in out,
          "a record of 1 epoch was taken for a 2-epoch run")
    out = compare(base + ["--dry-run"])
    check("# kept psap-b50-s1" in out, "the record of the same setting was not taken")

    # A run directory of another setting is refused, not reported as this one.
    other = os.path.join(work, "runs-other")
    compare(base + ["--runs-dir", other, "--archive-dir", os.path.join(work, "archive-other"), "--methods", "psap"])
    out = compare(base + ["--runs-dir", other, "--archive-dir", os.path.join(work, "archive-other-2"),
                          "--methods", "psap", "--train-subset", "128", "--report-only"], expect_rc=1)
    check("holds a run of another setting" in out and "train_images 256, this sweep 128" in out,
          "a run of 256 training images was taken for a sweep of 128")

    # A corrupt record stops the script and names the file.
    bad = os.path.join(archive, "psap-b50-s1.json")
    with open(bad, "r+") as f:
        f.truncate(20)
    out = compare(base + ["--report-only"], expect_rc=1)
    check(bad in out and "delete it" in out, "the error does not name the corrupt record and the fix")
    print("OK: records match their runs; the sweep survives the loss of its runs directory")


if __name__ == "__main__":
    main()
