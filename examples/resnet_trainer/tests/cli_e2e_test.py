"""End to end: a short psap-train run on a few hundred images must reduce
the loss, write metrics.jsonl and checkpoints, and agree with `eval`."""
import argparse
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from psap_train_testlib import (check, data_args, fresh_dir, read_metrics, read_safetensors, run,  # noqa: E402
                                synthetic_cifar10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--psap-train", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    work = fresh_dir(a.workdir)
    exe = a.psap_train
    out = os.path.join(work, "run")
    data = data_args(work)
    r = run([exe, "train", "--model", "resnet8", "--train-subset", "512", "--test-subset", "256", "--epochs", "4",
             "--batch-size", "32", "--threads", "2", "--progress", "lines", "--output", out] + data)
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    check("epoch 1/4" in r.stderr and "epoch 4/4" in r.stderr, "no plain progress lines on a non-terminal stderr")

    m = read_metrics(os.path.join(out, "metrics.jsonl"))
    check([x["epoch"] for x in m] == [1, 2, 3, 4], "metrics epochs %s" % [x["epoch"] for x in m])
    for key in ("lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "wall_s", "iteration"):
        check(all(key in x for x in m), "metrics.jsonl lacks %s" % key)
    losses = [x["train_loss"] for x in m]
    print("train loss by epoch:", ["%.4f" % v for v in losses], " test acc:", ["%.3f" % x["test_acc"] for x in m])
    check(losses[-1] < 0.8 * losses[0], "the training loss did not fall: %s" % losses)
    check(m[-1]["test_acc"] > 0.3, "test accuracy %.3f is no better than chance" % m[-1]["test_acc"])
    check(summary["test_acc"] == m[-1]["test_acc"], "stdout summary disagrees with metrics.jsonl")

    for f in ("last.safetensors", "final.safetensors", "settings.json"):
        check(os.path.exists(os.path.join(out, f)), "missing " + f)
    meta, tensors = read_safetensors(os.path.join(out, "final.safetensors"))
    check(meta["epoch"] == "4" and meta["iteration"] == str(4 * 16), "final checkpoint at %s/%s"
          % (meta["epoch"], meta["iteration"]))
    for name in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "fc.weight", "fc.bias",
                 "optim.momentum.fc.weight"):
        check(name in tensors, "checkpoint lacks %s" % name)

    # eval on the same seeded test subset reproduces the last epoch's numbers.
    r = run([exe, "eval", os.path.join(out, "final.safetensors"), "--test-subset", "256", "--threads", "2"] +
            (["--data"] + data[1:] if len(data) > 2 else []))
    ev = json.loads(r.stdout)
    check(ev["images"] == m[-1]["test_images"] and ev["images"] > 0, "eval saw %d images, training evaluated %d"
          % (ev["images"], m[-1]["test_images"]))
    check(abs(ev["accuracy"] - m[-1]["test_acc"]) < 1e-12, "eval accuracy %r vs metrics %r"
          % (ev["accuracy"], m[-1]["test_acc"]))

    # The device engine's code path (--device emulated: the GPU engine on its
    # host executor) evaluates the same network to float tolerance.
    r = run([exe, "eval", os.path.join(out, "final.safetensors"), "--test-subset", "256", "--threads", "2",
             "--device", "emulated"] + (["--data"] + data[1:] if len(data) > 2 else []))
    evd = json.loads(r.stdout)
    print("eval cpu: loss %.7f acc %.4f; emulated device: loss %.7f acc %.4f"
          % (ev["loss"], ev["accuracy"], evd["loss"], evd["accuracy"]))
    check(abs(evd["loss"] - ev["loss"]) <= 1e-4 * abs(ev["loss"]), "device-engine eval loss %r vs cpu %r"
          % (evd["loss"], ev["loss"]))
    check(abs(evd["accuracy"] - ev["accuracy"]) <= 1.0 / 256, "device-engine eval accuracy %r vs cpu %r"
          % (evd["accuracy"], ev["accuracy"]))
    r = run([exe, "eval", os.path.join(out, "final.safetensors"), "--device", "tpu"], expect_rc=None)
    check(r.returncode != 0 and "unknown device 'tpu'" in r.stderr and "cuda:N" in r.stderr,
          "an unknown --device was not rejected with the list of devices")

    # Starting from a checkpoint: its weights, a fresh optimizer and schedule.
    warm = os.path.join(work, "warm")
    run([exe, "train", "--checkpoint", os.path.join(out, "final.safetensors"), "--train-subset", "512",
         "--test-subset", "256", "--epochs", "1", "--batch-size", "32", "--threads", "2", "--progress", "none",
         "--output", warm] + data)
    wm = read_metrics(os.path.join(warm, "metrics.jsonl"))
    check(wm[0]["train_loss"] < losses[0], "a run started from a trained checkpoint begins at loss %.3f, "
          "no better than a fresh run's first epoch %.3f" % (wm[0]["train_loss"], losses[0]))
    wmeta, _ = read_safetensors(os.path.join(warm, "final.safetensors"))
    check(wmeta["init_checkpoint"].endswith("final.safetensors") and wmeta["iteration"] == "16",
          "warm start metadata")
    r = run([exe, "train", "--checkpoint", os.path.join(out, "final.safetensors"), "--model", "resnet20",
             "--output", os.path.join(work, "warm2")] + data, expect_rc=2)
    check("differs from the model of --checkpoint" in r.stderr, "a --model conflicting with --checkpoint was accepted")

    # CIFAR-10 binary batches and option-B shortcuts through the whole pipeline (3 x 32 x 32).
    cifar = os.path.join(work, "cifar")
    synthetic_cifar10(cifar)
    r = run([exe, "train", "--data", "cifar10", cifar, "--model", "resnet8", "--shortcut", "B", "--epochs", "1",
             "--batch-size", "16", "--threads", "2", "--progress", "none", "--output", os.path.join(work, "c10")])
    c10 = json.loads(r.stdout.strip().splitlines()[-1])
    check(c10["train_images"] == 120 and c10["epoch"] == 1, "cifar10 run: %s" % c10)
    cmeta, ct = read_safetensors(os.path.join(work, "c10", "final.safetensors"))
    check(ct["conv1.weight"][1] == [16, 3, 3, 3] and "layer2.0.downsample.0.weight" in ct, "cifar10/B checkpoint")

    # Clear errors for bad input.
    r = run([exe, "train", "--data", "fashion-mnist", os.path.join(work, "nope"), "--output",
             os.path.join(work, "bad")], expect_rc=1)
    check("dataset-fashion-mnist" in r.stderr and "nope" in r.stderr, "missing-data error lacks the fix")
    run([exe, "train", "--model", "resnet21", "--output", os.path.join(work, "bad2")] + data, expect_rc=2)
    bad = os.path.join(work, "corrupt.safetensors")
    with open(bad, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    r = run([exe, "eval", bad], expect_rc=1)
    check("corrupt.safetensors" in r.stderr and "JSON" in r.stderr, "corrupt checkpoint error is unclear")

    # Non-finite values never pass silently: not as options, not from a
    # diverged step, not from a checkpoint. One 64-image batch per epoch.
    quick = ["--model", "resnet8", "--train-subset", "64", "--test-subset", "64", "--batch-size", "64", "--threads", "2",
             "--progress", "none", "--epochs", "1"] + data
    r = run([exe, "train", "--gamma", "nan", "--output", os.path.join(work, "nan-gamma")] + quick, expect_rc=None)
    check(r.returncode != 0 and "--gamma" in r.stderr and "not a finite number" in r.stderr,
          "--gamma nan was not refused when parsed")
    diverged = os.path.join(work, "diverged")
    r = run([exe, "train", "--lr", "1e30", "--output", diverged] + quick, expect_rc=1)
    check("lower learning rate" in r.stderr or "lower the learning rate" in r.stderr,
          "a diverged run's error does not suggest a lower learning rate")
    check(not os.path.exists(os.path.join(diverged, "final.safetensors")), "a diverged run wrote final.safetensors")
    with open(os.path.join(out, "final.safetensors"), "rb") as f:
        blob = bytearray(f.read())
    (n,) = struct.unpack("<Q", blob[:8])
    begin = 8 + n + json.loads(blob[8:8 + n].decode("utf-8"))["layer1.0.bn1.weight"]["data_offsets"][0]
    blob[begin + 4:begin + 8] = struct.pack("<f", float("nan"))
    nan_ck = os.path.join(work, "nan.safetensors")
    with open(nan_ck, "wb") as f:
        f.write(blob)
    r = run([exe, "eval", nan_ck], expect_rc=1)
    check("nan.safetensors" in r.stderr and "'layer1.0.bn1.weight' holds a non-finite value (nan at index 1)" in r.stderr,
          "a NaN weight in a checkpoint was not refused naming the file and the tensor")
    r = run([exe, "train", "--data", "mnist", bad, "--output", os.path.join(work, "bad3")], expect_rc=2)
    check("corrupt.safetensors' is a file, not a directory" in r.stderr, "--data NAME FILE is not named as a file")

    # An --output that is not UTF-8 (a legal POSIX path): the summary line
    # writes it with U+FFFD instead of failing after the run is done.
    latin1 = os.fsdecode(os.path.join(os.fsencode(work), b"u\xe9"))
    p = subprocess.run([exe, "train", "--output", latin1] + quick, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(p.returncode == 0, "a non-UTF-8 --output failed (exit %d): %r" % (p.returncode, p.stderr[-500:]))
    check(json.loads(p.stdout.decode("utf-8").strip().splitlines()[-1])["output"].endswith("u\ufffd"),
          "the summary line does not show the non-UTF-8 --output with U+FFFD")
    check(os.path.exists(os.path.join(os.fsencode(work), b"u\xe9", b"final.safetensors")), "no final.safetensors in it")
    print("OK")


if __name__ == "__main__":
    main()
