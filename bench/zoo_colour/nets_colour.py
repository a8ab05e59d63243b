"""Colour architectures of the colour benchmark zoo, all following the modeldock model contract:
forward(x: float32 [N, 3, S, S] in [0, 1]) -> logits, @torch.jit.export embed(x) -> [N, D],
input normalisation inside the model. S is 32 or 64 (a 64 px model halves the image first).

    cnn     three conv-BN-ReLU-maxpool blocks 16/32/48 + FC 64 (D=64), own-set mean/std
    resnet  stem + three basic residual blocks 16/32/64, GAP (D=64), ImageNet mean/std
    mobile  depthwise-separable blocks (BN, ReLU6) to 128 channels, GAP (D=128), x -> 2x - 1
    mixer   MLP-mixer: 4x4 patches (8x8 at 64 px), width 64, 2 blocks, LayerNorm, GELU, mean over
            tokens (D=64), centring only (x - 0.5)
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                                "scripts")))
from assets.colour_nets import ChannelNormalise, ColourCNN  # noqa: E402

ARCHITECTURES = ("cnn", "resnet", "mobile", "mixer")
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


class _Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


class ResNetS(nn.Module):
    def __init__(self, num_classes, size):
        super().__init__()
        self.normalise = ChannelNormalise(*IMAGENET)
        stem_stride = 2 if size == 64 else 1
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            _Block(16, 16, 1), _Block(16, 32, 2), _Block(32, 64, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x):
        return self.features(self.normalise(x))


def _dw_separable(c_in, c_out, stride):
    return [nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
            nn.ReLU6(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU6()]


class MobileS(nn.Module):
    def __init__(self, num_classes, size):
        super().__init__()
        self.normalise = ChannelNormalise([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        layers = [nn.Conv2d(3, 16, 3, 2 if size == 64 else 1, 1, bias=False), nn.BatchNorm2d(16),
                  nn.ReLU6()]
        for c_in, c_out, stride in ((16, 32, 1), (32, 64, 2), (64, 96, 2), (96, 128, 1)):
            layers += _dw_separable(c_in, c_out, stride)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x):
        return self.features(self.normalise(x))


class _MixerBlock(nn.Module):
    def __init__(self, tokens, dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, tokens), nn.GELU(),
                                       nn.Linear(tokens, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(),
                                         nn.Linear(2 * dim, dim))

    def forward(self, x):  # [N, T, D]
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MixerS(nn.Module):
    def __init__(self, num_classes, size, dim=64, blocks=2):
        super().__init__()
        self.register_buffer("centre", torch.tensor(0.5))
        patch = 4 if size == 32 else 8
        self.patchify = nn.Conv2d(3, dim, patch, patch)
        tokens = (size // patch) ** 2
        self.blocks = nn.Sequential(*[_MixerBlock(tokens, dim) for _ in range(blocks)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x):
        t = self.patchify(x - self.centre).flatten(2).transpose(1, 2)
        return self.norm(self.blocks(t)).mean(1)


def build(arch, num_classes, size, mean, std):
    """mean/std: the training set's per-channel statistics (used by cnn only)."""
    if arch == "cnn":
        return ColourCNN(num_classes, mean, std, input_size=size, feature_dim=64, width=16)
    if arch == "resnet":
        return ResNetS(num_classes, size)
    if arch == "mobile":
        return MobileS(num_classes, size)
    if arch == "mixer":
        return MixerS(num_classes, size)
    raise ValueError(f"unknown architecture {arch!r}")


# Training recipe per architecture: optimiser, learning rate, weight decay, label smoothing,
# horizontal flips.
RECIPES = {
    "cnn": {"opt": "adam", "lr": 2e-3, "wd": 0.0, "smoothing": 0.0, "flip": False},
    "resnet": {"opt": "sgd", "lr": 0.05, "wd": 5e-4, "smoothing": 0.1, "flip": True},
    "mobile": {"opt": "sgd", "lr": 0.1, "wd": 4e-5, "smoothing": 0.1, "flip": True},
    "mixer": {"opt": "adamw", "lr": 2e-3, "wd": 1e-2, "smoothing": 0.0, "flip": False},
}
