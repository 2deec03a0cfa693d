"""Resume by SIGKILL: a psap-train run killed right after its first epoch
checkpoint and resumed with --resume (without --threads: the checkpoint's
count is used) must end with bitwise the same weights
(and optimizer state, and per-epoch metrics) as an uninterrupted run."""
import argparse
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from psap_train_testlib import (check, data_args, fail, fresh_dir, read_metrics, read_safetensors,  # noqa: E402
                                resume_without_threads, run)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--psap-train", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    work = fresh_dir(a.workdir)
    exe = a.psap_train
    args = ["train", "--model", "resnet8", "--train-subset", "256", "--test-subset", "64", "--epochs", "3",
            "--batch-size", "32", "--threads", "1", "--seed", "7", "--progress", "lines"] + data_args(work)
    ref, killed = os.path.join(work, "uninterrupted"), os.path.join(work, "killed")

    run([exe] + args + ["--output", ref])

    # Start the same run, SIGKILL it as soon as the first checkpoint lands.
    cmd = [exe] + args + ["--output", killed]
    print("$ " + " ".join(cmd) + "   (killed after the first checkpoint)", flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = os.path.join(killed, "last.safetensors")
    deadline = time.time() + 600
    while not os.path.exists(last):
        if p.poll() is not None:
            fail("psap-train exited (code %s) before writing %s" % (p.returncode, last))
        if time.time() > deadline:
            p.kill()
            fail("no checkpoint after 600 s")
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    check(p.returncode == -signal.SIGKILL, "the run finished before it could be killed (rc %s)" % p.returncode)
    check(not os.path.exists(os.path.join(killed, "final.safetensors")), "the killed run wrote final.safetensors")
    meta, _ = read_safetensors(last)  # atomically written: always a complete file
    check(meta["epoch"] in ("1", "2"), "checkpoint after the kill is at epoch %s" % meta["epoch"])
    print("killed at epoch %s, iteration %s" % (meta["epoch"], meta["iteration"]))

    # Options that would change the result are refused on resume.
    r = run([exe] + args + ["--output", killed, "--resume", "--lr", "0.5"], expect_rc=2)
    check("differs from the checkpointed run" in r.stderr, "a conflicting --lr on resume was not refused")
    r = run([exe] + args + ["--output", killed], expect_rc=2)
    check("--resume" in r.stderr, "restarting into an existing run without --resume was not refused")

    # Resumed without --threads: it must keep the checkpoint's count (1).
    resume_without_threads(exe, args, killed)

    meta_a, ta = read_safetensors(os.path.join(ref, "final.safetensors"))
    meta_b, tb = read_safetensors(os.path.join(killed, "final.safetensors"))
    check(sorted(ta) == sorted(tb), "tensor names differ")
    check(any(n.startswith("optim.momentum.") for n in ta), "no optimizer momentum in the checkpoint")
    differ = [n for n in ta if ta[n] != tb[n]]
    check(not differ, "%d tensors differ after resume, e.g. %s" % (len(differ), differ[:5]))
    for key in ("epoch", "iteration", "seed", "model_config", "settings", "lr_schedule", "optimizer"):
        check(meta_a[key] == meta_b[key], "metadata %s differs: %s vs %s" % (key, meta_a[key], meta_b[key]))

    ma, mb = read_metrics(os.path.join(ref, "metrics.jsonl")), read_metrics(os.path.join(killed, "metrics.jsonl"))
    check([m["epoch"] for m in mb] == [1, 2, 3], "metrics.jsonl of the resumed run has epochs %s"
          % [m["epoch"] for m in mb])
    for x, y in zip(ma, mb):
        for k in ("lr", "train_loss", "train_acc", "test_loss", "test_acc", "iteration"):
            check(x[k] == y[k], "epoch %d: %s %r vs %r" % (x["epoch"], k, x[k], y[k]))
    print("OK: %d tensors bitwise identical after kill + resume" % len(ta))


if __name__ == "__main__":
    main()
