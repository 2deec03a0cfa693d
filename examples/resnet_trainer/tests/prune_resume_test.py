"""Resume of a prune run by SIGKILL: a psap-train prune run killed right after
its first checkpoint, resumed, killed again in its fine-tune phase and
resumed again must end exactly like an uninterrupted run: bitwise the same
weights, optimizer state and pruner state (masks, snapshots, statistics, the
decision log), the same compact model, the same reports."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from psap_train_testlib import (check, data_args, fail, fresh_dir, read_metrics, read_safetensors,  # noqa: E402
                                resume_without_threads, run)

EPOCHS, FINETUNE = 4, 2


def epoch_of(path):
    try:
        meta, _ = read_safetensors(path)  # written atomically: complete or absent
        return int(meta["epoch"])
    except (OSError, ValueError, KeyError):
        return -1


def run_and_kill(cmd, last, min_epoch):
    """Starts cmd and SIGKILLs it once `last` holds a checkpoint of epoch >= min_epoch."""
    print("$ " + " ".join(cmd) + "   (killed at a checkpoint of epoch >= %d)" % min_epoch, flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while epoch_of(last) < min_epoch:
        if p.poll() is not None:
            fail("psap-train exited (code %s) before a checkpoint of epoch %d" % (p.returncode, min_epoch))
        if time.time() > deadline:
            p.kill()
            fail("no checkpoint of epoch %d after 900 s" % min_epoch)
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    check(p.returncode == -signal.SIGKILL, "the run finished before it could be killed (rc %s)" % p.returncode)
    e = epoch_of(last)
    print("killed with last.safetensors at epoch %d" % e, flush=True)
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--psap-train", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # shared CPUs: do not spin at OpenMP barriers
    work = fresh_dir(a.workdir)
    exe = a.psap_train
    # PSAP (stateful protector: gradient statistics over a 20-iteration window
    # that spans epochs, snapshots of gated channels, restores) with
    # fine-tuning; 8 iterations per epoch.
    args = ["prune", "--model", "resnet8", "--train-subset", "256", "--test-subset", "64", "--batch-size", "32",
            "--epochs", str(EPOCHS), "--finetune-epochs", str(FINETUNE), "--preset", "psap", "--budget", "0.5",
            "--threads", "1", "--seed", "11", "--progress", "lines"] + data_args(work)
    ref, killed = os.path.join(work, "uninterrupted"), os.path.join(work, "killed")
    run([exe] + args + ["--output", ref])

    last = os.path.join(killed, "last.safetensors")
    e1 = run_and_kill([exe] + args + ["--output", killed], last, 1)
    check(e1 < EPOCHS, "the first kill came after the pruning epochs (epoch %d)" % e1)
    check(not os.path.exists(os.path.join(killed, "final.safetensors")), "the killed run wrote final.safetensors")
    _, t = read_safetensors(last)
    check("pruner.state" in t and t["pruner.state"][0] == "U8", "last.safetensors lacks a U8 pruner.state")

    # Options that would change the result are refused on resume.
    other = [("0.6" if x == "0.5" else x) for x in args]  # --budget 0.6
    r = run([exe] + other + ["--output", killed, "--resume"], expect_rc=2)
    check("differs from the checkpointed run" in r.stderr, "a conflicting --budget on resume was not refused")
    r = run([exe] + args + ["--output", killed], expect_rc=2)
    check("--resume" in r.stderr, "restarting into an existing run without --resume was not refused")

    e2 = run_and_kill([exe] + args + ["--output", killed, "--resume"], last, EPOCHS + 1)
    check(e2 > EPOCHS, "the second kill did not land in the fine-tune phase (epoch %d)" % e2)
    # The last resume omits --threads: it must keep the checkpoint's count (1).
    resume_without_threads(exe, args, killed)

    for name in ("final.safetensors", "compact.safetensors"):
        meta_a, ta = read_safetensors(os.path.join(ref, name))
        meta_b, tb = read_safetensors(os.path.join(killed, name))
        check(sorted(ta) == sorted(tb), "%s: tensor names differ" % name)
        differ = [n for n in ta if ta[n] != tb[n]]
        check(not differ, "%s: %d tensors differ after resume, e.g. %s" % (name, len(differ), differ[:5]))
        for key in ("epoch", "iteration", "model_config", "settings", "epochs_consumed"):
            check(meta_a.get(key) == meta_b.get(key), "%s metadata %s differs" % (name, key))
    _, ta = read_safetensors(os.path.join(ref, "final.safetensors"))
    check("pruner.state" in ta and any(n.startswith("optim.momentum.") for n in ta), "final.safetensors lacks state")

    for name in ("pruning_log.jsonl", "layers.json", "layers.csv"):
        with open(os.path.join(ref, name)) as f, open(os.path.join(killed, name)) as g:
            check(f.read() == g.read(), "%s differs after resume" % name)
    ra = json.load(open(os.path.join(ref, "result.json")))
    rb = json.load(open(os.path.join(killed, "result.json")))
    for key in ("accuracy", "costs", "kept", "steps", "churn_per_step", "restores_per_step", "compact_check",
                "epochs_consumed", "pruner_config", "compact_model_config"):
        check(ra[key] == rb[key], "result.json %s differs: %r vs %r" % (key, ra[key], rb[key]))
    ma, mb = read_metrics(os.path.join(ref, "metrics.jsonl")), read_metrics(os.path.join(killed, "metrics.jsonl"))
    check([m["epoch"] for m in mb] == list(range(1, EPOCHS + FINETUNE + 1)), "metrics.jsonl epochs %s" % [m["epoch"] for m in mb])
    for x, y in zip(ma, mb):
        for k in ("lr", "train_loss", "train_acc", "test_loss", "test_acc", "iteration", "phase", "reduction", "churn"):
            check(x.get(k) == y.get(k), "epoch %d: %s %r vs %r" % (x["epoch"], k, x.get(k), y.get(k)))
    print("OK: killed at epochs %d and %d, resumed twice; weights, masks, pruner state and reports identical" % (e1, e2))


if __name__ == "__main__":
    main()
