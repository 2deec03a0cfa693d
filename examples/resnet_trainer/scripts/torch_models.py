"""PyTorch twins of the reference trainer's networks, built from the same
config JSON (models/resnet.hpp, models/vgg.hpp) with the same state-dict
names, for the cross-check and the throughput comparison."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class OptionA(nn.Module):
    """y[:, j] = x[:, map[j], ::2, ::2], or 0 where map[j] = -1."""

    def __init__(self, channel_map):
        super().__init__()
        self.map = list(channel_map)
        # The unpruned SFP layout (identity, then zeros) is a plain zero pad,
        # the cheapest form in PyTorch.
        n_in = sum(1 for m in self.map if m >= 0)
        self.pad = self.map == list(range(n_in)) + [-1] * (len(self.map) - n_in)
        self.register_buffer("index", torch.tensor([max(m, 0) for m in channel_map]), persistent=False)
        self.register_buffer("keep", torch.tensor([1.0 if m >= 0 else 0.0 for m in channel_map]), persistent=False)

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        if self.pad:
            return F.pad(x, (0, 0, 0, 0, 0, len(self.map) - x.shape[1]))
        return x.index_select(1, self.index) * self.keep.view(1, -1, 1, 1).to(x.dtype)


class BasicBlock(nn.Module):
    def __init__(self, cin, mid, cout, stride, shortcut, channel_map):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # modules, so hooks can see pre-ReLU values
        self.option_a = None
        self.downsample = None
        if stride != 1 or cin != cout:
            if shortcut == "A":
                self.option_a = OptionA(channel_map)
            else:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.option_a is not None:
            sc = self.option_a(x)
        elif self.downsample is not None:
            sc = self.downsample(x)
        else:
            sc = x
        return self.relu2(out + sc)


class ResNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        widths = cfg["stage_widths"]
        self.conv1 = nn.Conv2d(cfg["in_channels"], widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        cin = widths[0]
        for s, blocks in enumerate(cfg["block_widths"]):
            layers = []
            for b, mid in enumerate(blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                cmap = cfg.get("shortcut_maps", [[]] * len(widths))[s] if b == 0 else []
                layers.append(BasicBlock(cin, mid, widths[s], stride, cfg["shortcut"], cmap))
                cin = widths[s]
            setattr(self, f"layer{s + 1}", nn.Sequential(*layers))
        self.stages = len(widths)
        self.fc = nn.Linear(widths[-1], cfg["num_classes"])
        init_like_trainer(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for s in range(self.stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class VGG16(nn.Module):
    POOL_AFTER = {1, 3, 6, 9, 12}

    def __init__(self, cfg):
        super().__init__()
        layers, cin = [], cfg["in_channels"]
        for i, w in enumerate(cfg["widths"]):
            layers += [nn.Conv2d(cin, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i in self.POOL_AFTER:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            cin = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, cfg["num_classes"])
        init_like_trainer(self)

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def init_like_trainer(net):
    """Kaiming normal (fan_out, ReLU gain) convs, BN γ=1 β=0, default Linear."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet_config(depth, num_classes=10, in_channels=3, size=32, shortcut="A"):
    n = (depth - 2) // 6
    widths = [16, 32, 64]
    cfg = {"arch": "resnet", "depth": depth, "shortcut": shortcut, "in_channels": in_channels,
           "num_classes": num_classes, "input_size": [size, size], "stage_widths": widths,
           "block_widths": [[w] * n for w in widths]}
    if shortcut == "A":
        cfg["shortcut_maps"] = [[]] + [[j if j < widths[s - 1] else -1 for j in range(widths[s])] for s in (1, 2)]
    return cfg


def make(cfg):
    return ResNet(cfg) if cfg["arch"] == "resnet" else VGG16(cfg)
