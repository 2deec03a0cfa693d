"""Shared helpers for the psap-train end-to-end tests (standard library only).

The tests run the real psap-train binary. They use Debian's Fashion-MNIST
when it is installed and otherwise write a small synthetic, learnable data
set in the MNIST IDX layout, so they also run on machines without the
dataset-fashion-mnist package.
"""
import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import sys

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
SKIP = 77  # CTest SKIP_RETURN_CODE


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def _idx(dims, payload):
    return struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + payload


def synthetic_mnist(directory, n_train=1000, n_test=200, seed=1):
    """28x28 images: class k is a centred 12x12 square of brightness 20 + 25k
    on noise, so random crops and flips keep the class."""
    rng = random.Random(seed)
    os.makedirs(directory, exist_ok=True)

    def make(n):
        images, labels = bytearray(), bytearray()
        for _ in range(n):
            k = rng.randrange(10)
            img = bytearray(rng.randrange(30) for _ in range(28 * 28))
            for r in range(8, 20):
                for c in range(8, 20):
                    img[r * 28 + c] = min(255, 20 + 25 * k + rng.randrange(10))
            images += img
            labels.append(k)
        return bytes(images), bytes(labels)

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = make(n)
        with gzip.open(os.path.join(directory, prefix + "-images-idx3-ubyte.gz"), "wb") as f:
            f.write(_idx([n, 28, 28], images))
        with open(os.path.join(directory, prefix + "-labels-idx1-ubyte"), "wb") as f:
            f.write(_idx([n], labels))


def synthetic_cifar10(directory, per_batch=24, seed=2):
    """CIFAR-10 binary batches (1 label byte + 3072 planar RGB bytes per record)."""
    rng = random.Random(seed)
    os.makedirs(directory, exist_ok=True)
    names = ["data_batch_%d.bin" % i for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        with open(os.path.join(directory, name), "wb") as f:
            for _ in range(per_batch):
                k = rng.randrange(10)
                px = bytearray(rng.randrange(80) for _ in range(3072))
                for c in range(32):
                    px[(k % 3) * 1024 + (3 * k) * 32 + c] = 255
                f.write(bytes([k]) + bytes(px))


def data_args(workdir):
    """--data arguments for a small, quick data set (PSAP_TEST_SYNTHETIC_DATA=1 forces the synthetic one)."""
    if not os.environ.get("PSAP_TEST_SYNTHETIC_DATA") and os.path.exists(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")):
        return ["--data", "fashion-mnist"]
    d = os.path.join(workdir, "synthetic-mnist")
    if not os.path.exists(os.path.join(d, "t10k-labels-idx1-ubyte")):
        synthetic_mnist(d)
    print("note: %s not installed; using a synthetic IDX data set" % FASHION_DIR)
    return ["--data", "mnist", d]


def run(cmd, expect_rc=0, **kw):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if p.stderr:
        sys.stderr.write(p.stderr)
    if expect_rc is not None and p.returncode != expect_rc:
        fail("exit code %d (expected %d) from %s\nstdout: %s" % (p.returncode, expect_rc, " ".join(cmd), p.stdout))
    return p



def resume_without_threads(exe, args, output):
    """Resumes the run in `output` with `args` minus their --threads pair and
    checks that it kept the count the checkpoint was written with, not every
    core (side-by-side sweeps resumed that way oversubscribed the machine)."""
    i = args.index("--threads")
    written = int(args[i + 1])
    r = run([exe] + args[:i] + args[i + 2:] + ["--output", output, "--resume"])
    check("warning: the checkpoint was written with" not in r.stderr,
          "a resume without --threads did not take the checkpoint's thread count:\n" + r.stderr)
    with open(os.path.join(output, "settings.json")) as f:
        used = json.load(f)["threads"]
    check(used == written, "the resumed run used %r threads, the checkpoint's count is %d" % (used, written))
    return r

DTYPES = {"F64": ("d", 8), "F32": ("f", 4), "I64": ("q", 8), "I32": ("i", 4), "U8": ("B", 1),
          "I16": ("h", 2), "U16": ("H", 2), "I8": ("b", 1), "U32": ("I", 4), "U64": ("Q", 8), "BOOL": ("?", 1)}


def read_safetensors(path):
    """(metadata, {name: (dtype, shape, raw bytes)}) by the format spec, independently of psap."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        tensors[name] = (e["dtype"], list(e["shape"]), data[b:end])
    return meta, tensors


def values(dtype, raw):
    code, size = DTYPES[dtype]
    return list(struct.unpack("<%d%s" % (len(raw) // size, code), raw))


def read_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
