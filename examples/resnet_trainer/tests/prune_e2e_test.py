"""psap-train prune end to end: every preset completes a short run on a few
hundred images, meets its budget by psap's counter, by the compact model's own
count and by a MAC/parameter count computed here from the compact
checkpoint's tensor shapes, writes a valid result.json (docs/pruning-run.md)
and its reports, and the compact checkpoint evaluates like the masked one.
Also: stream groups (options A and B), VGG-16, a run from a trained
checkpoint, and the refusals."""
import argparse
import csv
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from psap_train_testlib import check, data_args, fail, fresh_dir, read_metrics, read_safetensors, run  # noqa: E402

PRESETS = ["psap", "static_gate", "sfp", "asfp", "fpgm", "l1", "slimming", "taylor", "agp", "random"]
FINETUNE = {"l1", "slimming", "taylor"}
RESULT_KEYS = ["schema", "method", "preset", "pruner_config", "groups_mode", "model", "model_config",
               "compact_model_config", "data", "seed", "epochs", "finetune_epochs", "epochs_consumed", "accuracy",
               "budget", "costs", "kept", "group_sizes", "steps", "churn_per_step", "restores_per_step",
               "compact_check", "wall_seconds", "init_checkpoint", "init_checkpoint_epochs"]
VGG_POOL_AFTER = [False, True, False, True, False, False, True, False, False, True, False, False, True]


def conv_out(size, stride):
    return (size - 1) // stride + 1  # 3x3 pad 1 or 1x1 pad 0


def costs_from_checkpoint(path):
    """(MACs, parameters) of the network in a checkpoint, from its tensor
    shapes and model_config alone (the literature's counter: conv + linear
    MACs; weights, biases and BN gamma/beta)."""
    meta, tensors = read_safetensors(path)
    cfg = json.loads(meta["model_config"])
    h, w = cfg["input_size"]
    shape = {n: s for n, (_, s, _) in tensors.items()}
    params = sum(math.prod(s) for n, s in shape.items()
                 if (n.endswith(".weight") or n.endswith(".bias")) and not n.startswith("optim."))
    macs = 0
    if cfg["arch"] == "resnet":
        def conv_macs(name, hw):
            s = shape[name + ".weight"]
            return s[0] * s[1] * s[2] * s[3] * hw[0] * hw[1]
        macs += conv_macs("conv1", (h, w))
        size = (h, w)
        for st, blocks in enumerate(cfg["block_widths"]):
            for b in range(len(blocks)):
                stride = 2 if st > 0 and b == 0 else 1
                out = (conv_out(size[0], stride), conv_out(size[1], stride))
                p = "layer%d.%d" % (st + 1, b)
                macs += conv_macs(p + ".conv1", out) + conv_macs(p + ".conv2", out)
                if p + ".downsample.0.weight" in shape:
                    macs += conv_macs(p + ".downsample.0", out)
                size = out
        fc = shape["fc.weight"]
    else:
        size, idx = (h, w), 0
        for i, pool in enumerate(VGG_POOL_AFTER):
            s = shape["features.%d.weight" % idx]
            macs += s[0] * s[1] * s[2] * s[3] * size[0] * size[1]
            if pool:
                size = ((size[0] + 1) // 2, (size[1] + 1) // 2)  # ceil_mode
            idx += 4 if pool else 3
        fc = shape["classifier.weight"]
    return macs + fc[0] * fc[1], params


def check_run(exe, out, *, method, budget, kind, epochs, finetune, groups, test_subset, data, init_epochs=0):
    r = json.load(open(os.path.join(out, "result.json")))
    missing = [k for k in RESULT_KEYS if k not in r]
    check(not missing, "%s: result.json lacks %s" % (out, missing))
    check(r["schema"] == "psap-train/prune-result/1", "schema is %r" % r["schema"])
    check(r["method"] == method, "method %r, expected %r" % (r["method"], method))
    check(r["groups_mode"] == groups, "groups_mode %r" % r["groups_mode"])
    check(r["epochs"] == epochs and r["finetune_epochs"] == finetune, "epochs %r + %r" % (r["epochs"], r["finetune_epochs"]))
    check(r["epochs_consumed"] == init_epochs + epochs + finetune, "epochs_consumed %r" % r["epochs_consumed"])
    for k in ("before_last_step", "after_last_step", "after_recalibration", "final", "compact"):
        v = r["accuracy"][k]
        check(isinstance(v, float) and 0.0 <= v <= 1.0, "accuracy.%s = %r" % (k, v))
    # Budget: psap's counter, the compact model's own count, and ours.
    c = r["costs"]
    check(c["unpruned"]["macs"] == c["unpruned"]["macs_model"], "psap's unpruned MACs differ from the model's count")
    check(c["unpruned"]["params"] == c["unpruned"]["params_model"], "psap's unpruned params differ from the model's")
    check(c["pruned"]["macs"] == c["pruned"]["macs_compact"], "psap's pruned MACs differ from the compact model's count")
    check(c["pruned"]["params"] == c["pruned"]["params_compact"], "psap's pruned params differ from the compact model's")
    macs0, params0 = costs_from_checkpoint(os.path.join(out, "final.safetensors"))
    macs1, params1 = costs_from_checkpoint(os.path.join(out, "compact.safetensors"))
    check((macs0, params0) == (c["unpruned"]["macs"], c["unpruned"]["params"]),
          "shape-derived unpruned costs %s vs %s" % ((macs0, params0), (c["unpruned"]["macs"], c["unpruned"]["params"])))
    check((macs1, params1) == (c["pruned"]["macs"], c["pruned"]["params"]),
          "shape-derived pruned costs %s vs %s" % ((macs1, params1), (c["pruned"]["macs"], c["pruned"]["params"])))
    ours = {"flops": 1 - macs1 / macs0, "params": 1 - params1 / params0}.get(kind, c["reduction"]["filters"])
    check(ours >= budget, "%s: %s reduced by %.4f < budget %.2f" % (out, kind, ours, budget))
    check(r["budget"] == {"kind": kind, "target": budget, "met": True, "met_by_compact": True},
          "budget entry %r" % r["budget"])
    # Kept widths: layers.json, result.json and the compact tensors agree.
    layers = json.load(open(os.path.join(out, "layers.json")))
    check({g["group"]: len(g["kept"]) for g in layers["groups"]} == r["kept"], "layers.json and result.json kept differ")
    check(r["group_sizes"] == {g["group"]: g["size"] for g in layers["groups"]}, "group sizes differ")
    _, ct = read_safetensors(os.path.join(out, "compact.safetensors"))
    for g, k in r["kept"].items():
        if g.startswith("layer"):  # a ResNet block: conv1's filters
            check(ct[g + ".conv1.weight"][1][0] == k, "compact %s.conv1 has %d filters, %d kept" % (g, ct[g + ".conv1.weight"][1][0], k))
        if g.startswith("features."):  # a VGG conv
            check(ct[g + ".weight"][1][0] == k, "compact %s has %d filters, %d kept" % (g, ct[g + ".weight"][1][0], k))
    with open(os.path.join(out, "layers.csv")) as f:
        rows = list(csv.DictReader(f))
    check(len(rows) == len(layers["layers"]) and sum(int(x["macs_after"]) for x in rows) == c["pruned"]["macs"],
          "layers.csv does not add up to the pruned MACs")
    # The decision log: one line per step, the churn result.json reports.
    with open(os.path.join(out, "pruning_log.jsonl")) as f:
        log = [json.loads(x) for x in f if x.strip()]
    check(len(log) == len(r["steps"]) and [s["churn"] for s in log] == r["churn_per_step"], "pruning_log.jsonl vs steps")
    check([sum(g["restored"] for g in s["groups"]) for s in log] == r["restores_per_step"], "restores per step")
    check(log[-1]["macs"] == c["pruned"]["macs"], "the last step's MACs are not the pruned MACs")
    # metrics.jsonl: every epoch, the pruning ones with their step.
    m = read_metrics(os.path.join(out, "metrics.jsonl"))
    check([x["epoch"] for x in m] == list(range(1, epochs + finetune + 1)), "metrics epochs %s" % [x["epoch"] for x in m])
    check(all(x["phase"] == "prune" and "reduction" in x and "churn" in x for x in m[:epochs]), "pruning epochs lack step fields")
    check(all(x["phase"] == "finetune" for x in m[epochs:]), "fine-tune epochs not marked")
    # The compact model computes what the masked one does.
    cc = r["compact_check"]
    check(cc["images"] > 0 and cc["max_abs_diff"] <= 1e-5 * max(1.0, cc["max_abs_logit"]),
          "compact vs masked logits differ by %r (max |logit| %r)" % (cc["max_abs_diff"], cc["max_abs_logit"]))
    ev = [exe, "eval", "--test-subset", str(test_subset)] + (["--data"] + data[1:] if len(data) > 2 else [])
    e_compact = json.loads(run(ev + [os.path.join(out, "compact.safetensors")]).stdout)
    e_final = json.loads(run(ev + [os.path.join(out, "final.safetensors")]).stdout)
    check(e_compact["accuracy"] == r["accuracy"]["compact"], "eval compact.safetensors: %r vs result %r"
          % (e_compact["accuracy"], r["accuracy"]["compact"]))
    check(e_final["accuracy"] == r["accuracy"]["final"], "eval final.safetensors: %r vs result %r"
          % (e_final["accuracy"], r["accuracy"]["final"]))
    check(abs(e_compact["loss"] - e_final["loss"]) <= 1e-4 * max(1.0, e_final["loss"]), "compact and masked losses differ")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--psap-train", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # shared CPUs: do not spin at OpenMP barriers
    work = fresh_dir(a.workdir)
    exe = a.psap_train
    data = data_args(work)
    n_test = 100
    base = ["prune", "--model", "resnet8", "--train-subset", "512", "--test-subset", str(n_test), "--batch-size", "64",
            "--threads", "2", "--seed", "3", "--progress", "lines"] + data

    for preset in PRESETS:
        out = os.path.join(work, preset)
        ft = 1 if preset in FINETUNE else 0
        run([exe] + base + ["--preset", preset, "--budget", "0.5", "--epochs", "2", "--finetune-epochs", str(ft),
                            "--output", out])
        r = check_run(exe, out, method=preset, budget=0.5, kind="flops", epochs=2, finetune=ft, groups="internal",
                      test_subset=n_test, data=data)
        print("OK %-12s MACs -%.1f%%  acc %.3f -> %.3f -> %.3f -> %.3f  max |diff| %.2g" % (
            preset, 100 * r["costs"]["reduction"]["macs"], r["accuracy"]["before_last_step"],
            r["accuracy"]["after_last_step"], r["accuracy"]["after_recalibration"], r["accuracy"]["final"],
            r["compact_check"]["max_abs_diff"]), flush=True)

    # Residual streams: option-A lineages with hard masks, option B with gates and a params budget.
    out = os.path.join(work, "stream-A")
    run([exe] + base + ["--preset", "agp", "--budget", "0.6", "--epochs", "2", "--groups", "internal+stream",
                        "--output", out])
    r = check_run(exe, out, method="agp", budget=0.6, kind="flops", epochs=2, finetune=0, groups="internal+stream",
                  test_subset=n_test, data=data)
    check({"stream.1", "stream.2", "stream.3"} <= set(r["kept"]), "option-A stream groups missing: %s" % r["kept"])
    check(all(r["kept"][g] < r["group_sizes"][g] for g in ("stream.1", "stream.2", "stream.3")), "streams were not pruned")
    out = os.path.join(work, "stream-B")
    run([exe] + base + ["--shortcut", "B", "--preset", "static_gate", "--budget", "0.4", "--budget-kind", "params",
                        "--epochs", "2", "--groups", "internal+stream", "--output", out])
    check_run(exe, out, method="static_gate", budget=0.4, kind="params", epochs=2, finetune=0, groups="internal+stream",
              test_subset=n_test, data=data)

    # VGG-16 (soft: constants folded into bias maps).
    out = os.path.join(work, "vgg")
    vgg = ["prune", "--model", "vgg16", "--train-subset", "128", "--test-subset", "50", "--batch-size", "64",
           "--threads", "2", "--progress", "lines", "--epochs", "1", "--preset", "asfp", "--budget", "0.5",
           "--output", out] + data
    run([exe] + vgg)
    check_run(exe, out, method="asfp", budget=0.5, kind="flops", epochs=1, finetune=0, groups="internal", test_subset=50,
              data=data)
    # Re-pruning the compact VGG-16: a zeroed filter of a conv that adds a bias map
    # emits that map, not a constant, so compaction must refuse rather than write a
    # network that differs from the pruned one.
    again = os.path.join(work, "vgg-again")
    vgg_again = [a if a != out else again for a in vgg] + ["--checkpoint", os.path.join(out, "compact.safetensors")]
    p = run([exe] + vgg_again, expect_rc=1)
    check("bias map" in p.stderr and "cannot be compacted exactly" in p.stderr, "re-pruned compact VGG: %s" % p.stderr)
    check(not os.path.exists(os.path.join(again, "compact.safetensors")), "a compact network was written anyway")

    # L1 on a trained network, then fine-tuning: the checkpoint's epoch counts.
    trained = os.path.join(work, "trained")
    run([exe, "train", "--model", "resnet8", "--train-subset", "512", "--test-subset", str(n_test), "--batch-size", "64",
         "--threads", "2", "--epochs", "2", "--progress", "none", "--output", trained] + data)
    out = os.path.join(work, "l1-trained")
    run([exe] + base + ["--preset", "l1", "--budget", "0.6", "--epochs", "1", "--finetune-epochs", "2",
                        "--checkpoint", os.path.join(trained, "final.safetensors"), "--output", out])
    r = check_run(exe, out, method="l1", budget=0.6, kind="flops", epochs=1, finetune=2, groups="internal",
                  test_subset=n_test, data=data, init_epochs=2)
    check(r["init_checkpoint"].endswith("final.safetensors"), "init_checkpoint %r" % r["init_checkpoint"])

    # Refusals (exit code 2, a message that says what to do).
    bad = os.path.join(work, "bad")
    p = run([exe] + base + ["--preset", "sfp", "--groups", "internal+stream", "--epochs", "1", "--output", bad], expect_rc=2)
    check("--groups internal" in p.stderr and "reconstruct=hard" in p.stderr, "soft + streams: %s" % p.stderr)
    p = run([exe] + base + ["--preset", "fpgm", "--finetune-epochs", "1", "--epochs", "1", "--output", bad], expect_rc=2)
    check("regrow" in p.stderr, "soft + fine-tune: %s" % p.stderr)
    p = run([exe] + base + ["--set", "protect.kapa=2", "--epochs", "1", "--output", bad], expect_rc=2)
    check("no parameter 'kapa'" in p.stderr and "kappa" in p.stderr, "unknown parameter: %s" % p.stderr)
    # psap with one epoch: its only step is frozen, so it prunes nothing, and says so up front.
    p = run([exe] + base + ["--preset", "psap", "--epochs", "1", "--output", os.path.join(work, "psap-e1")])
    said = p.stdout + p.stderr
    check("frozen final phase" in said and "final_phase=0" in said, "psap with one epoch: no note in %s" % said[-2000:])
    print("OK: every preset, stream groups (A and B), VGG-16, a trained start and the refusals")


if __name__ == "__main__":
    try:
        main()
    except KeyError as e:
        fail("missing key %s" % e)
