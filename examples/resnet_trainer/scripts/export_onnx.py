#!/usr/bin/env python3
"""Export a psap-train checkpoint (safetensors) to an ONNX model.

  export_onnx.py CHECKPOINT OUT.onnx [--fold-bn] [--opset 13]
                 [--mean M [M ...] --std S [S ...] | --normalization-from EVAL_DUMP]

The architecture comes from the checkpoint's `model_config` metadata
(docs/checkpoint-format.md): CIFAR ResNets with any per-layer widths, option-A
shortcut maps (renumbered, with zero channels) or option-B downsample convs,
VGG-16, and the `bias_maps` of compacted networks (docs/pruning-run.md). Every
tensor is checked against the shape the config implies, so a checkpoint that
does not match its config is refused with the tensor's name.

Op mapping (docs/compaction.md): conv -> Conv (no bias unless the checkpoint
has one); `<conv>.bias_map` -> Add of a 1 x C x H x W constant right after that
Conv; BN -> BatchNormalization in inference mode (epsilon 1e-5, the running
statistics), or with --fold-bn folded into the Conv's weights and bias (the
bias map scaled likewise); ReLU -> Relu; residual sum -> Add then Relu;
option-A shortcut -> Slice (steps 2 on H and W) then Pad with zero channels
and/or Gather on the channel axis (exact: every output is a copy or +0);
option B -> Conv 1x1 stride 2 + BatchNormalization; VGG max pool -> MaxPool
2x2 stride 2 ceil_mode=1; head -> GlobalAveragePool, Flatten, Gemm (transB).

Input: float32 N x C x H x W, N dynamic. By default the graph expects the
input normalised as psap-train feeds its networks, (pixel / 255 - mean[c]) /
std[c], where mean and std are those of the run's training set (or the
published ones with --standard-stats); they are not stored in the checkpoint.
With --mean/--std, or --normalization-from a file written by `psap-train eval
--dump-logits` (its metadata records the exact values), the graph starts with
x * (1 / std) + (-mean / std) and takes pixel / 255 (values in [0, 1]).

Needs numpy and the `onnx` package (Debian: python3-onnx); not safetensors
(the file is read here by the format's specification).
"""
import argparse
import json
import math
import os
import struct
import sys

try:
    import numpy as np
except ImportError as _e:  # a clear message instead of a traceback
    sys.exit("export_onnx.py: numpy is needed (Debian: apt install python3-numpy python3-onnx): %s" % _e)

BN_EPS = 1e-5  # nn/batch_norm.hpp: PyTorch's BatchNorm2d default, not stored in checkpoints
VGG_POOL_AFTER = [False, True, False, True, False, False, True, False, False, True, False, False, True]
ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
             "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


class ExportError(Exception):
    """A problem with the input (file, metadata, tensors) or the options."""


def read_safetensors(path):
    """(metadata dict, {name: numpy array}) of a safetensors file, by the format's specification."""
    if not os.path.exists(path):
        raise ExportError("%s: no such file" % path)
    if not os.path.isfile(path):
        raise ExportError("%s: not a regular file" % path)
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ExportError("%s: not a safetensors file (%d bytes, shorter than the 8-byte header length)" % (path, len(blob)))
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ExportError("%s: not a safetensors file (header length %d runs past the end of the file)" % (path, n))
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ExportError("%s: not a safetensors file (header is not UTF-8 JSON: %s)" % (path, e))
    if not isinstance(header, dict):
        raise ExportError("%s: not a safetensors file (header is not a JSON object)" % path)
    meta = header.pop("__metadata__", None) or {}
    data = memoryview(blob)[8 + n:]
    tensors = {}
    for name, e in header.items():
        try:
            dt = np.dtype(ST_DTYPES[e["dtype"]])
            begin, end = e["data_offsets"]
            shape = [int(d) for d in e["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ExportError("%s: tensor %r has a malformed or unsupported entry %r" % (path, name, e))
        if not (0 <= begin <= end <= len(data)) or (end - begin) != math.prod(shape) * dt.itemsize:
            raise ExportError("%s: tensor %r: data_offsets %r do not fit shape %r, dtype %s and a data buffer of %d "
                              "bytes: the file is truncated or not a safetensors file"
                              % (path, name, e["data_offsets"], shape, e["dtype"], len(data)))
        tensors[name] = np.frombuffer(data[begin:end], dtype=dt).reshape(shape)
    return meta, tensors


def read_checkpoint(path):
    meta, tensors = read_safetensors(path)
    for key in ("checkpoint_version", "model_config"):
        if key not in meta:
            raise ExportError("%s: no '%s' in the metadata: not a psap-train checkpoint "
                              "(see docs/checkpoint-format.md)" % (path, key))
    version = meta["checkpoint_version"]
    if version != "1":
        raise ExportError("%s: checkpoint_version %r; this exporter reads version 1" % (path, version))
    try:
        cfg = json.loads(meta["model_config"])
    except ValueError as e:
        raise ExportError("%s: model_config is not JSON: %s" % (path, e))
    if not isinstance(cfg, dict):
        raise ExportError("%s: model_config is not a JSON object" % path)
    return meta, cfg, tensors


def cfg_get(cfg, key, kind, what="model_config"):
    if key not in cfg:
        raise ExportError("%s lacks %r" % (what, key))
    v = cfg[key]
    ok = {"int": lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1,
          "ints": lambda x: isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in x),
          "str": lambda x: isinstance(x, str)}[kind]
    if not ok(v):
        raise ExportError("%s: %r = %r is not %s" % (what, key, v, {"int": "a positive integer",
                                                                     "ints": "a list of positive integers",
                                                                     "str": "a string"}[kind]))
    return v


class Builder:
    """Collects nodes and initializers; checks every tensor taken from the checkpoint."""

    def __init__(self, tensors, source):
        import onnx.helper  # noqa: F401  (fail early with the import error)
        from onnx import numpy_helper
        self.tensors = tensors
        self.used = set()
        self.source = source
        self.nodes, self.inits = [], []
        self.numpy_helper = numpy_helper
        self.count = 0

    def weight(self, name, shape):
        if name not in self.tensors:
            raise ExportError("%s lacks tensor %r, which its model_config implies" % (self.source, name))
        t = self.tensors[name]
        if list(t.shape) != list(shape) or t.dtype != np.float32:
            raise ExportError("%s: tensor %r is %s %s, its model_config implies float32 %s: the checkpoint does not "
                              "match its model_config" % (self.source, name, t.dtype, list(t.shape), list(shape)))
        self.used.add(name)
        return t

    def const(self, name, array):
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        import onnx.helper as h
        self.nodes.append(h.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv_bn(self, conv, bn, x, cin, cout, k, stride, pad, hw, bias_maps, fold):
        """Conv (+ bias map) + BN in inference mode; returns (output, (h_out, w_out))."""
        h_out = (hw[0] + 2 * pad - k) // stride + 1
        w_out = (hw[1] + 2 * pad - k) // stride + 1
        w = self.weight(conv + ".weight", [cout, cin, k, k])
        bias = self.weight(conv + ".bias", [cout]) if conv + ".bias" in self.tensors else None
        bmap = self.weight(conv + ".bias_map", [cout, h_out, w_out]) if conv in bias_maps else None
        if conv not in bias_maps and conv + ".bias_map" in self.tensors:
            raise ExportError("%s has tensor %r but model_config's bias_maps does not list %r"
                              % (self.source, conv + ".bias_map", conv))
        gamma = self.weight(bn + ".weight", [cout])
        beta = self.weight(bn + ".bias", [cout])
        mean = self.weight(bn + ".running_mean", [cout])
        var = self.weight(bn + ".running_var", [cout])
        self.used.add(bn + ".num_batches_tracked")
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[pad, pad, pad, pad])
        if fold:
            s = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
            wf = (w.astype(np.float64) * s[:, None, None, None]).astype(np.float32)
            bf = beta.astype(np.float64) - mean.astype(np.float64) * s
            if bias is not None:
                bf = bf + bias.astype(np.float64) * s
            y = self.node("Conv", [x, self.const(conv + ".weight", wf), self.const(conv + ".bias", bf.astype(np.float32))],
                          conv, **attrs)
            if bmap is not None:
                m = (bmap.astype(np.float64) * s[:, None, None]).astype(np.float32)[None]
                y = self.node("Add", [y, self.const(conv + ".bias_map", m)], conv + ".add_bias_map")
            return y, (h_out, w_out)
        ins = [x, self.const(conv + ".weight", w)]
        if bias is not None:
            ins.append(self.const(conv + ".bias", bias))
        y = self.node("Conv", ins, conv, **attrs)
        if bmap is not None:
            y = self.node("Add", [y, self.const(conv + ".bias_map", bmap[None])], conv + ".add_bias_map")
        y = self.node("BatchNormalization", [y] + [self.const(bn + "." + p, t) for p, t in
                                                  (("weight", gamma), ("bias", beta), ("running_mean", mean),
                                                   ("running_var", var))], bn, epsilon=BN_EPS)
        return y, (h_out, w_out)

    def option_a(self, x, channel_map, cin, name):
        """y[:, j] = x[:, map[j], ::2, ::2], or +0 where map[j] = -1 (nn/shortcut.hpp)."""
        big = np.iinfo(np.int64).max
        y = self.node("Slice", [x, self.const(name + ".starts", np.array([0, 0], np.int64)),
                                self.const(name + ".ends", np.array([big, big], np.int64)),
                                self.const(name + ".axes", np.array([2, 3], np.int64)),
                                self.const(name + ".steps", np.array([2, 2], np.int64))], name + ".subsample")
        cout = len(channel_map)
        kept = [m for m in channel_map if m >= 0]
        if channel_map == list(range(cin)):
            return y
        if channel_map == list(range(cin)) + [-1] * (cout - cin):  # the unpruned layout: zeros appended
            return self.node("Pad", [y, self.const(name + ".pads", np.array([0, 0, 0, 0, 0, cout - cin, 0, 0], np.int64))],
                             name + ".pad")
        if len(kept) < cout:  # one zero channel at index cin for the -1 entries
            y = self.node("Pad", [y, self.const(name + ".pads", np.array([0, 0, 0, 0, 0, 1, 0, 0], np.int64))],
                          name + ".pad")
        index = np.array([m if m >= 0 else cin for m in channel_map], np.int64)
        return self.node("Gather", [y, self.const(name + ".index", index)], name + ".gather", axis=1)

    def head(self, x, fc, features, classes):
        w = self.weight(fc + ".weight", [classes, features])
        b = self.weight(fc + ".bias", [classes]) if fc + ".bias" in self.tensors else None
        y = self.node("GlobalAveragePool", [x], "avgpool")
        y = self.node("Flatten", [y], "flatten", axis=1)
        ins = [y, self.const(fc + ".weight", w)] + ([self.const(fc + ".bias", b)] if b is not None else [])
        return self.node("Gemm", ins, "logits", transB=1)


def bias_map_names(cfg):
    names = cfg.get("bias_maps", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ExportError("model_config: 'bias_maps' must be a list of conv names")
    return set(names)


def build_resnet(b, cfg, x, fold):
    depth = cfg_get(cfg, "depth", "int")
    sc = cfg_get(cfg, "shortcut", "str")
    if sc not in ("A", "B"):
        raise ExportError("model_config: shortcut %r is neither 'A' nor 'B'" % sc)
    sw = cfg_get(cfg, "stage_widths", "ints")
    bw = cfg.get("block_widths")
    if not isinstance(bw, list) or len(bw) != len(sw) or not sw:
        raise ExportError("model_config: 'block_widths' needs one list per entry of 'stage_widths'")
    for blocks in bw:
        cfg_get({"w": blocks}, "w", "ints", "model_config block_widths")
        if not blocks:
            raise ExportError("model_config: every stage needs at least one block")
    if depth != 2 * sum(len(s) for s in bw) + 2:
        raise ExportError("model_config: depth %d does not match %d blocks (depth = 2 * blocks + 2)"
                          % (depth, sum(len(s) for s in bw)))
    maps = None
    if sc == "A":
        maps = cfg.get("shortcut_maps")
        if not isinstance(maps, list) or len(maps) != len(sw) or maps[0] != []:
            raise ExportError("model_config: option A needs 'shortcut_maps', one list per stage ([] for stage 1)")
        for s in range(1, len(sw)):
            m = maps[s]
            if (not isinstance(m, list) or len(m) != sw[s] or
                    not all(isinstance(v, int) and -1 <= v < sw[s - 1] for v in m)):
                raise ExportError("model_config: shortcut_maps[%d] must hold %d entries in [-1, %d)" % (s, sw[s], sw[s - 1]))
    bias_maps = bias_map_names(cfg)
    hw = tuple(cfg["input_size"])
    y, hw = b.conv_bn("conv1", "bn1", x, cfg["in_channels"], sw[0], 3, 1, 1, hw, bias_maps, fold)
    y = b.node("Relu", [y], "relu")
    cur = sw[0]
    for s, blocks in enumerate(bw):
        for i, mid in enumerate(blocks):
            p = "layer%d.%d" % (s + 1, i)
            transition = s > 0 and i == 0
            stride = 2 if transition else 1
            t, hw1 = b.conv_bn(p + ".conv1", p + ".bn1", y, cur, mid, 3, stride, 1, hw, bias_maps, fold)
            t = b.node("Relu", [t], p + ".relu1")
            t, hw2 = b.conv_bn(p + ".conv2", p + ".bn2", t, mid, sw[s], 3, 1, 1, hw1, bias_maps, fold)
            if transition and sc == "A":
                short = b.option_a(y, maps[s], cur, p + ".shortcut")
            elif transition:
                short, _ = b.conv_bn(p + ".downsample.0", p + ".downsample.1", y, cur, sw[s], 1, 2, 0, hw, bias_maps, fold)
            else:
                short = y
            y = b.node("Relu", [b.node("Add", [t, short], p + ".add")], p + ".relu2")
            cur, hw = sw[s], hw2
    return b.head(y, "fc", cur, cfg["num_classes"])


def build_vgg(b, cfg, x, fold):
    if cfg_get(cfg, "depth", "int") != 16:
        raise ExportError("model_config: only VGG-16 is supported (depth %r)" % cfg["depth"])
    widths = cfg_get(cfg, "widths", "ints")
    if len(widths) != 13:
        raise ExportError("model_config: 'widths' needs 13 conv widths, got %d" % len(widths))
    bias_maps = bias_map_names(cfg)
    hw, cin, idx, y = tuple(cfg["input_size"]), cfg["in_channels"], 0, x
    for i, w in enumerate(widths):
        y, hw = b.conv_bn("features.%d" % idx, "features.%d" % (idx + 1), y, cin, w, 3, 1, 1, hw, bias_maps, fold)
        y = b.node("Relu", [y], "features.%d" % (idx + 2))
        if VGG_POOL_AFTER[i]:
            y = b.node("MaxPool", [y], "features.%d" % (idx + 3), kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
            hw = tuple((v - 2 + 1) // 2 + 1 for v in hw)  # ceil((v - 2) / 2) + 1
        idx += 4 if VGG_POOL_AFTER[i] else 3
        cin = w
    return b.head(y, "classifier", cin, cfg["num_classes"])


def normalization_from(path):
    meta, _ = read_safetensors(path)
    if "normalization" not in meta:
        raise ExportError("%s has no 'normalization' metadata; write it with psap-train eval --dump-logits" % path)
    n = json.loads(meta["normalization"])
    return n["mean"], n["std"]


def export(checkpoint, out, fold_bn=False, opset=13, mean=None, std=None):
    """Writes the ONNX model of `checkpoint` to `out`; returns the onnx.ModelProto."""
    import onnx
    import onnx.helper as h

    if opset < 13:
        raise ExportError("--opset must be >= 13 (Slice steps, Pad with a pads input), got %d" % opset)
    meta, cfg, tensors = read_checkpoint(checkpoint)
    arch = cfg.get("arch")
    if arch not in ("resnet", "vgg"):
        raise ExportError("%s: model_config arch %r; this exporter knows 'resnet' and 'vgg'" % (checkpoint, arch))
    c_in = cfg_get(cfg, "in_channels", "int")
    classes = cfg_get(cfg, "num_classes", "int")
    size = cfg_get(cfg, "input_size", "ints")
    if len(size) != 2:
        raise ExportError("model_config: 'input_size' must be [height, width]")
    if (mean is None) != (std is None):
        raise ExportError("give both --mean and --std, or neither")
    b = Builder(tensors, checkpoint)
    x = "input"
    if mean is not None:
        if len(mean) != c_in or len(std) != c_in:
            raise ExportError("--mean/--std need %d values each (the model's input channels), got %d and %d"
                              % (c_in, len(mean), len(std)))
        if not all(s > 0 for s in std):
            raise ExportError("--std values must be positive")
        m32, s32 = np.array(mean, np.float32), np.array(std, np.float32)
        x = b.node("Mul", [x, b.const("input_scale", (np.float32(1) / s32).reshape(1, c_in, 1, 1))], "normalize_scale")
        x = b.node("Add", [x, b.const("input_shift", (-m32 / s32).reshape(1, c_in, 1, 1))], "normalize_shift")
    logits = (build_resnet if arch == "resnet" else build_vgg)(b, cfg, x, fold_bn)
    extra = [n for n in tensors if n not in b.used and not n.startswith(("optim.", "pruner."))]
    if extra:
        raise ExportError("%s: tensors %s are not part of the network its model_config describes"
                          % (checkpoint, sorted(extra)[:5]))
    graph = h.make_graph(
        b.nodes, meta.get("model", arch),
        [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", c_in, size[0], size[1]])],
        [h.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, ["N", classes])], initializer=b.inits)
    model = h.make_model(graph, producer_name="psap export_onnx.py", opset_imports=[h.make_opsetid("", opset)])
    if opset == 13:
        model.ir_version = 7  # the IR of opset 13 (ONNX 1.8), readable by older runtimes
    model.doc_string = ("psap-train checkpoint %s exported to ONNX; input %s" %
                        (os.path.basename(checkpoint), "pixel / 255" if mean is not None else
                         "normalised as psap-train feeds it, (pixel / 255 - mean) / std"))
    props = {"psap.model_config": json.dumps(cfg, sort_keys=True), "psap.source": os.path.abspath(checkpoint),
             "psap.bn": "folded" if fold_bn else "BatchNormalization",
             "psap.input": json.dumps({"normalized_in_graph": mean is not None, "mean": mean, "std": std})}
    for k in ("model", "epoch", "seed"):
        if k in meta:
            props["psap." + k] = meta[k]
    h.set_model_props(model, props)
    onnx.checker.check_model(model)
    tmp = out + ".tmp-%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, out)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("checkpoint", help="psap-train checkpoint (final.safetensors, compact.safetensors, ...)")
    ap.add_argument("output", help="ONNX file to write")
    ap.add_argument("--fold-bn", action="store_true", help="fold BatchNormalization into the convs")
    ap.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13)")
    ap.add_argument("--mean", type=float, nargs="+", help="per-channel mean of pixel/255: normalise inside the graph")
    ap.add_argument("--std", type=float, nargs="+", help="per-channel std of pixel/255 (with --mean)")
    ap.add_argument("--normalization-from", metavar="EVAL_DUMP",
                    help="take --mean/--std from a `psap-train eval --dump-logits` file")
    a = ap.parse_args(argv)
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        print("export_onnx.py: the Python package 'onnx' is needed (Debian: apt install python3-onnx): %s" % e,
              file=sys.stderr)
        return 1
    try:
        mean, std = a.mean, a.std
        if a.normalization_from:
            if mean is not None or std is not None:
                raise ExportError("--normalization-from replaces --mean/--std; give one or the other")
            mean, std = normalization_from(a.normalization_from)
        model = export(a.checkpoint, a.output, a.fold_bn, a.opset, mean, std)
    except ExportError as e:
        print("export_onnx.py: error: %s" % e, file=sys.stderr)
        return 1
    ops = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(json.dumps({"output": a.output, "opset": a.opset, "nodes": len(model.graph.node), "ops": ops,
                      "input_normalized_in_graph": mean is not None, "bn": "folded" if a.fold_bn else "BatchNormalization"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
