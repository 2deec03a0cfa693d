"""ONNX export of psap-train checkpoints (scripts/export_onnx.py, docs/compaction.md).

Short `psap-train prune` runs (a soft preset, so that compaction folds
constants into bias maps; PSAP with residual-stream groups on options A and B;
VGG-16 with a soft preset), then, for the masked final.safetensors and the
compact.safetensors of each: `psap-train eval --dump-logits` gives psap's own
eval-mode logits on test images, the checkpoint is exported with and without
--fold-bn, and onnxruntime's logits on the same inputs must equal psap's to
1e-5 relative to the logit scale (max |diff| <= 1e-5 * max(1, max |logit|)).
Also: the input normalisation baked into the graph (raw pixels / 255 in), a
checkpoint whose option-A maps are scrambled (Gather with zero channels; psap
evaluates it too), and refusals of bad input.

Exits 77 (CTest: skipped) with the reason when no interpreter with numpy, onnx
and onnxruntime is found. Candidates: this interpreter, $PSAP_ONNX_PYTHON,
$VIRTUAL_ENV/bin/python, <repo>/.venv/bin/python, python3 on PATH.
"""
import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "..", "scripts")
EXPORT = os.path.join(SCRIPTS, "export_onnx.py")
sys.path.insert(0, HERE)
from psap_train_testlib import SKIP, check, data_args, fail, fresh_dir, run  # noqa: E402

PRUNE_SEED = 3     # psap-train --seed: initialisation, data order, subsets
SCRAMBLE_SEED = 11  # permutation of the option-A maps of the scrambled checkpoint
TEST_IMAGES = 64
PROBE = "import numpy, onnx, onnx.helper, onnxruntime"


def has_modules():
    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


def reexec_or_skip():
    if has_modules():
        return
    repo = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
    candidates = [os.environ.get("PSAP_ONNX_PYTHON"),
                  os.path.join(os.environ["VIRTUAL_ENV"], "bin", "python") if os.environ.get("VIRTUAL_ENV") else None,
                  os.path.join(repo, ".venv", "bin", "python"), shutil.which("python3")]
    reasons = []
    if not os.environ.get("PSAP_ONNX_REEXEC"):  # at most one hop
        for py in candidates:
            if not py or not os.path.exists(py) or os.path.abspath(py) == os.path.abspath(sys.executable):
                continue
            p = subprocess.run([py, "-c", PROBE], capture_output=True, text=True)
            if p.returncode == 0:
                env = dict(os.environ, PSAP_ONNX_REEXEC="1")
                sys.exit(subprocess.run([py, os.path.abspath(__file__)] + sys.argv[1:], env=env).returncode)
            reasons.append("%s: %s" % (py, (p.stderr.strip().splitlines() or ["?"])[-1]))
    try:
        exec(PROBE)
    except ImportError as e:
        reasons.insert(0, "%s: %s" % (sys.executable, e))
    print("SKIPPED: no Python with numpy, onnx and onnxruntime (%s); install them, e.g. apt install python3-onnx "
          "and bash scripts/setup.sh --python (onnxruntime from PyPI in .venv)" % "; ".join(reasons))
    sys.exit(SKIP)


def write_safetensors(path, meta, header_tensors, data):
    """A safetensors file with the given metadata and the tensors (entries and data buffer) of another file."""
    header = dict(header_tensors)
    header["__metadata__"] = meta
    h = json.dumps(header).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def rewrite_config(src, dst, edit):
    """Copy of checkpoint `src` whose model_config is edit(config)."""
    with open(src, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__")
    cfg = json.loads(meta["model_config"])
    edit(cfg)
    meta["model_config"] = json.dumps(cfg)
    write_safetensors(dst, meta, header, blob[8 + n:])


class Checker:
    def __init__(self, exe, work):
        import numpy as np
        import onnxruntime as ort
        self.np, self.ort = np, ort
        self.exe, self.work = exe, work
        self.results = []

    def psap_dump(self, ckpt, name):
        path = os.path.join(self.work, name + ".dump.safetensors")
        run([self.exe, "eval", ckpt, "--test-subset", str(TEST_IMAGES), "--threads", "2", "--dump-logits", path])
        sys.path.insert(0, SCRIPTS)
        from export_onnx import read_safetensors
        meta, t = read_safetensors(path)
        check(t["logits"].shape[0] == TEST_IMAGES, "%s: %d images dumped" % (path, t["logits"].shape[0]))
        return path, t

    def export(self, ckpt, out, *extra):
        p = run([sys.executable, EXPORT, ckpt, out] + list(extra))
        return json.loads(p.stdout.strip().splitlines()[-1])

    def onnx_logits(self, path, x):
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.inter_op_num_threads = 1
        s = self.ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        check([i.name for i in s.get_inputs()] == ["input"], "%s: inputs %s" % (path, [i.name for i in s.get_inputs()]))
        return s.run(None, {"input": self.np.ascontiguousarray(x, dtype=self.np.float32)})[0]

    def compare(self, label, ours, theirs):
        np = self.np
        check(theirs.shape == ours.shape, "%s: ONNX logits %s, psap %s" % (label, theirs.shape, ours.shape))
        check(np.all(np.isfinite(theirs)), "%s: non-finite ONNX logits" % label)
        diff = float(np.abs(theirs.astype(np.float64) - ours).max())
        scale = float(np.abs(ours).max())
        tol = 1e-5 * max(1.0, scale)
        agree = float(np.mean(theirs.argmax(1) == ours.argmax(1)))
        print("  %-40s max |diff| %.3g (max |logit| %.3g, tolerance %.3g), same top-1 on %.0f%%"
              % (label, diff, scale, tol, 100 * agree), flush=True)
        check(diff <= tol, "%s: ONNX and psap logits differ by %.3g > %.3g" % (label, diff, tol))
        self.results.append((label, diff, scale))

    def checkpoint(self, ckpt, name):
        """psap's logits vs ONNX (BN nodes, BN folded) for one checkpoint; returns the export summaries."""
        _, dump = self.psap_dump(ckpt, name)
        out = {}
        for variant, extra in (("bn", []), ("folded", ["--fold-bn"])):
            path = os.path.join(self.work, "%s.%s.onnx" % (name, variant))
            out[variant] = self.export(ckpt, path, *extra)
            self.compare("%s (%s)" % (name, variant), dump["logits"], self.onnx_logits(path, dump["inputs"]))
        check(out["bn"]["ops"].get("BatchNormalization", 0) == out["bn"]["ops"]["Conv"],
              "%s: one BatchNormalization per Conv expected: %s" % (name, out["bn"]["ops"]))
        check("BatchNormalization" not in out["folded"]["ops"], "%s: --fold-bn left BN nodes" % name)
        return out


def prune(exe, work, data, name, args):
    outdir = os.path.join(work, name)
    run([exe, "prune", "--threads", "2", "--seed", str(PRUNE_SEED), "--progress", "none", "--batch-size", "64",
         "--test-subset", str(TEST_IMAGES), "--output", outdir] + args + data)
    with open(os.path.join(outdir, "result.json")) as f:
        r = json.load(f)
    print("%s: MACs -%.1f%%, compact check %s" % (name, 100 * r["costs"]["reduction"]["macs"], r["compact_check"]),
          flush=True)
    return outdir, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--psap-train", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    reexec_or_skip()
    import numpy as np
    import onnx
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # shared CPUs: do not spin at OpenMP barriers
    print("python %s, onnx %s, onnxruntime %s; seeds: prune %d, scramble %d"
          % (sys.executable, onnx.__version__, __import__("onnxruntime").__version__, PRUNE_SEED, SCRAMBLE_SEED))
    work = fresh_dir(a.workdir)
    exe = a.psap_train
    data = data_args(work)
    c = Checker(exe, work)

    # 1. Soft pruning: compaction folds the constants of soft-pruned channels into bias maps.
    soft, r = prune(exe, work, data, "asfp-A", ["--model", "resnet20", "--train-subset", "512", "--preset", "asfp",
                                               "--budget", "0.5", "--epochs", "2"])
    check(r["compact_check"]["bias_maps"], "the asfp run folded no constant into a bias map, so the bias-map export is "
                                          "untested; pick a run that has some")
    cfg_bias = r["compact_model_config"].get("bias_maps", [])
    for ck in ("final", "compact"):
        out = c.checkpoint(os.path.join(soft, ck + ".safetensors"), "asfp-A/" + ck)
    check(out["bn"]["ops"]["Add"] == 9 + len(cfg_bias), "asfp compact: %d Add nodes, expected 9 residual sums + %d bias "
          "maps" % (out["bn"]["ops"]["Add"], len(cfg_bias)))

    # 2. PSAP with residual-stream groups, option A: renumbered shortcut maps.
    psap_a, r = prune(exe, work, data, "psap-A", ["--model", "resnet20", "--train-subset", "256", "--preset", "psap",
                                                 "--budget", "0.7", "--epochs", "2", "--groups", "internal+stream"])
    check(r["budget"]["met_by_compact"], "PSAP run did not meet its budget: %s" % r["budget"])
    for ck in ("final", "compact"):
        c.checkpoint(os.path.join(psap_a, ck + ".safetensors"), "psap-A/" + ck)

    # 3. PSAP with stream groups, option B: downsample convs pruned with their streams.
    psap_b, r = prune(exe, work, data, "psap-B", ["--model", "resnet8", "--shortcut", "B", "--train-subset", "256",
                                                 "--preset", "psap", "--budget", "0.5", "--epochs", "2",
                                                 "--groups", "internal+stream"])
    for ck in ("final", "compact"):
        c.checkpoint(os.path.join(psap_b, ck + ".safetensors"), "psap-B/" + ck)

    # 4. VGG-16, soft: bias maps after max pools, a constant folded into the classifier bias.
    vgg, r = prune(exe, work, data, "asfp-vgg", ["--model", "vgg16", "--train-subset", "128", "--preset", "asfp",
                                                "--budget", "0.5", "--epochs", "1"])
    for ck in ("final", "compact"):
        c.checkpoint(os.path.join(vgg, ck + ".safetensors"), "asfp-vgg/" + ck)

    # 5. Normalisation in the graph: raw pixels / 255 in, psap's logits out.
    compact = os.path.join(soft, "compact.safetensors")
    dump_path, dump = c.psap_dump(compact, "asfp-A/compact-again")
    norm = os.path.join(work, "normalized.onnx")
    s = c.export(compact, norm, "--normalization-from", dump_path)
    check(s["input_normalized_in_graph"], "export did not report the normalisation")
    pixels = dump["pixels"].astype(np.float32) / np.float32(255)
    c.compare("asfp-A/compact (pixels / 255 in)", dump["logits"], c.onnx_logits(norm, pixels))
    props = {p.key: p.value for p in onnx.load(norm).metadata_props}
    check(json.loads(props["psap.input"])["normalized_in_graph"] is True, "psap.input property: %s" % props)
    with open(os.path.join(soft, "result.json")) as f:
        compact_cfg = json.load(f)["compact_model_config"]
    check(json.loads(props["psap.model_config"]) == compact_cfg,
          "psap.model_config property differs from result.json's compact_model_config")

    # 6. Scrambled option-A maps (any permutation, zero channels anywhere): Gather after Pad.
    #    psap-train evaluates the same checkpoint, so the reference is psap's own shortcut.
    rng = random.Random(SCRAMBLE_SEED)
    scrambled = os.path.join(work, "scrambled.safetensors")

    def scramble(cfg):
        for s_ in (1, 2):
            m = cfg["shortcut_maps"][s_]
            rng.shuffle(m)
            if -1 not in m:
                m[0] = -1
    rewrite_config(os.path.join(psap_a, "compact.safetensors"), scrambled, scramble)
    out = c.checkpoint(scrambled, "scrambled-A")
    check(out["bn"]["ops"].get("Gather") == 2, "scrambled maps: expected 2 Gather nodes, got %s" % out["bn"]["ops"])

    # 7. Bad input: a clear message and exit code 1, no output file.
    bad_out = os.path.join(work, "bad.onnx")

    def refused(ckpt, expect, *extra):
        p = run([sys.executable, EXPORT, ckpt, bad_out] + list(extra), expect_rc=1)
        check(all(e in p.stderr for e in expect), "message for %s lacks %s: %r" % (ckpt, expect, p.stderr))
        check(not os.path.exists(bad_out), "an ONNX file was written for bad input %s" % ckpt)

    refused(os.path.join(work, "missing.safetensors"), ["no such file"])
    refused(dump_path, ["no 'checkpoint_version'", "not a psap-train checkpoint"])  # an eval dump
    no_cfg = os.path.join(work, "no-config.safetensors")
    with open(compact, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__")
    del meta["model_config"]
    write_safetensors(no_cfg, meta, header, blob[8 + n:])
    refused(no_cfg, ["no 'model_config'", "not a psap-train checkpoint"])
    trunc = os.path.join(work, "truncated.safetensors")
    for cut, expect in ((20, "header length"), (len(blob) // 2, "truncated")):
        with open(trunc, "wb") as f:
            f.write(blob[:cut])
        refused(trunc, ["not a safetensors file", expect])
    wrong = os.path.join(work, "wrong-widths.safetensors")

    def widen(cfg):
        cfg["block_widths"][0][0] += 1
    rewrite_config(compact, wrong, widen)
    refused(wrong, ["layer1.0.conv1.weight", "does not match its model_config"])
    unknown = os.path.join(work, "unknown-arch.safetensors")
    rewrite_config(compact, unknown, lambda cfg: cfg.update(arch="mobilenet"))
    refused(unknown, ["'mobilenet'", "knows 'resnet' and 'vgg'"])
    refused(compact, ["need 1 values each"], "--mean", "0.1", "0.2", "--std", "0.3", "0.4")
    refused(compact, ["both --mean and --std"], "--mean", "0.1")

    worst = max(r_[1] / max(1.0, r_[2]) for r_ in c.results)
    print("OK: %d exports agree with psap-train (worst max |diff| / max(1, logit scale) = %.3g)" % (len(c.results), worst))


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as e:
        fail(str(e))
