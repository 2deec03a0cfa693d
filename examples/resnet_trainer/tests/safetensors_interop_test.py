"""Interoperability with the reference implementation: the PyPI `safetensors`
package (numpy API) must load a psap-train checkpoint and see the same
tensors, values and metadata that psap-train reports; and psap-train must
read a file written by the reference writer.

Exits 77 (CTest: skipped) with the reason when no Python interpreter with
`safetensors` and `numpy` is found. Candidates: this interpreter,
$PSAP_SAFETENSORS_PYTHON, $VIRTUAL_ENV/bin/python, <repo>/.venv/bin/python,
python3 on PATH.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from psap_train_testlib import SKIP, check, data_args, fresh_dir, run  # noqa: E402


def has_safetensors():
    try:
        import numpy  # noqa: F401
        import safetensors.numpy  # noqa: F401
        return True
    except ImportError:
        return False


def reexec_with_safetensors():
    """Re-run this script under an interpreter that has safetensors, or skip."""
    if has_safetensors():
        return
    repo = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
    candidates = [os.environ.get("PSAP_SAFETENSORS_PYTHON"),
                  os.path.join(os.environ["VIRTUAL_ENV"], "bin", "python") if os.environ.get("VIRTUAL_ENV") else None,
                  os.path.join(repo, ".venv", "bin", "python"), shutil.which("python3")]
    probe = "import numpy, safetensors.numpy"
    if not os.environ.get("PSAP_INTEROP_REEXEC"):  # at most one hop
        for py in candidates:
            if not py or not os.path.exists(py) or os.path.abspath(py) == os.path.abspath(sys.executable):
                continue
            if subprocess.run([py, "-c", probe], capture_output=True).returncode == 0:
                env = dict(os.environ, PSAP_INTEROP_REEXEC="1")
                sys.exit(subprocess.run([py, os.path.abspath(__file__)] + sys.argv[1:], env=env).returncode)
    print("SKIPPED: the Python package 'safetensors' (with numpy) is not importable from %s or any of %s; "
          "install it, e.g. /usr/bin/python3 -m venv --system-site-packages .venv && .venv/bin/pip install "
          "safetensors" % (sys.executable, [c for c in candidates if c]))
    sys.exit(SKIP)


def inspect(exe, path):
    return json.loads(run([exe, "inspect", "--values", path]).stdout)


def compare(exe, path, ref_metadata=None):
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file

    ours = inspect(exe, path)
    theirs = load_file(path)
    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}
    check(sorted(theirs) == sorted(ours["tensors"]), "tensor names differ: %s vs %s"
          % (sorted(theirs)[:5], sorted(ours["tensors"])[:5]))
    check(meta == ours["metadata"], "metadata differs")
    if ref_metadata is not None:
        check(meta == ref_metadata, "metadata differs from what was written")
    np_dtype = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
    for name, arr in theirs.items():
        o = ours["tensors"][name]
        check(arr.dtype == np_dtype[o["dtype"]], "%s: dtype %s vs %s" % (name, arr.dtype, o["dtype"]))
        check(list(arr.shape) == o["shape"], "%s: shape %s vs %s" % (name, arr.shape, o["shape"]))
        raw = np.ascontiguousarray(arr).tobytes()
        check(zlib.crc32(raw) == o["crc32"], "%s: CRC32 of the bytes differs" % name)
        mine = np.array(o["values"], dtype=arr.dtype).reshape(arr.shape)
        check(mine.tobytes() == raw, "%s: values differ" % name)
    return theirs, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--psap-train", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    reexec_with_safetensors()
    import numpy as np
    import safetensors
    from safetensors.numpy import save_file

    print("using safetensors %s, numpy %s (%s)" % (safetensors.__version__, np.__version__, sys.executable))
    work = fresh_dir(a.workdir)
    exe = a.psap_train

    # 1. A real checkpoint from psap-train, read by the reference.
    out = os.path.join(work, "run")
    run([exe, "train", "--model", "resnet8", "--train-subset", "128", "--test-subset", "64", "--epochs", "1",
         "--batch-size", "32", "--threads", "2", "--progress", "none", "--output", out] + data_args(work))
    ckpt = os.path.join(out, "final.safetensors")
    tensors, meta = compare(exe, ckpt)
    check(tensors["conv1.weight"].dtype == np.float32 and tensors["conv1.weight"].ndim == 4, "conv1.weight")
    check(tensors["bn1.num_batches_tracked"].dtype == np.int64 and tensors["bn1.num_batches_tracked"].shape == (),
          "num_batches_tracked must be an I64 scalar as in PyTorch")
    check(int(tensors["bn1.num_batches_tracked"]) == 4, "num_batches_tracked after 4 steps")
    check(tensors["optim.momentum.conv1.weight"].shape == tensors["conv1.weight"].shape, "momentum buffer shape")
    check(meta["epoch"] == "1" and json.loads(meta["model_config"])["arch"] == "resnet", "training state metadata")
    print("reference loaded %d tensors of %s identically" % (len(tensors), ckpt))

    # 2. A file from the reference writer, read by psap-train.
    ref = os.path.join(work, "reference.safetensors")
    rng = np.random.default_rng(0)
    data = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": rng.standard_normal((5,)),
        "i64": np.array([-(2 ** 62), 0, 2 ** 62], dtype=np.int64),
        "i32": np.arange(-3, 3, dtype=np.int32).reshape(2, 3),
        "u8": np.arange(250, 256, dtype=np.uint8),
        "scalar": np.array(1.5, dtype=np.float32),
        "empty": np.zeros((0, 7), dtype=np.float32),
    }
    written_meta = {"epoch": "3", "note": "written by safetensors.numpy"}
    save_file(data, ref, metadata=written_meta)
    theirs, _ = compare(exe, ref, written_meta)
    for k, v in data.items():
        check(theirs[k].tobytes() == v.tobytes(), "round trip of %s" % k)
    print("OK")


if __name__ == "__main__":
    main()
