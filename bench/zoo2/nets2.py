"""The four zoo2 architectures - none of them is in bench/zoo - all following the modeldock
model contract:

    forward(x): float32 [N, 1, 28, 28] in [0, 1] -> logits [N, K]
    embed(x):   same input -> penultimate features [N, D]   (@torch.jit.export)

Each network carries its own input normalisation, but unlike bench/zoo (where every model
standardises with the mean/std of its own training set) the four families use four conventions:

    vgg      per-training-set mean/std (as bench/zoo)
    wmlp     [0, 1] -> [-1, 1]                       (mean 0.5, std 0.5)
    mobile   fixed Fashion-MNIST statistics          (mean 0.2860, std 0.3530) whatever the domain
    allconv  centring only                           (mean 0.5, std 1)

Embedding widths differ too (D = 256, 512, 64, 128), and so do the normalisation layers
(GroupNorm, LayerNorm, BatchNorm, none). Kept small: the ground truth fine-tunes every model on
every task on a shared 2-core CPU.
"""
import torch
from torch import nn

ARCHITECTURES = ("vgg", "wmlp", "mobile", "allconv")

# Input normalisation per family; None = statistics of the model's own training set.
INPUT_NORM = {"vgg": None, "wmlp": (0.5, 0.5), "mobile": (0.2860, 0.3530), "allconv": (0.5, 1.0)}


class _Normalised(nn.Module):
    """Base: normalisation buffers + a linear head on top of features()."""

    def __init__(self, feature_dim, num_classes, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        raise NotImplementedError

    @torch.jit.export
    def embed(self, x):
        return self.features((x - self.mean) / self.std)

    def forward(self, x):
        return self.head(self.embed(x))


class VGG(_Normalised):
    """VGG-style: two stages of two stacked 3x3 convs (GroupNorm, ReLU) + max-pool, then one wide
    fully connected layer. D = 256."""

    def __init__(self, num_classes, mean, std):
        super().__init__(256, num_classes, mean, std)

        def conv(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU()]

        self.body = nn.Sequential(
            *conv(1, 16), *conv(16, 16), nn.MaxPool2d(2),        # 14x14
            *conv(16, 32), *conv(32, 32), nn.MaxPool2d(2),       # 7x7
            nn.MaxPool2d(2, ceil_mode=True),                     # 4x4
            nn.Flatten(), nn.Linear(32 * 4 * 4, 256), nn.ReLU())

    def features(self, x):
        return self.body(x)


class WideMLP(_Normalised):
    """784-512-512 with LayerNorm, GELU and dropout. D = 512."""

    def __init__(self, num_classes, mean, std):
        super().__init__(512, num_classes, mean, std)
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.LayerNorm(512), nn.GELU(), nn.Dropout(0.2),
            nn.Linear(512, 512), nn.LayerNorm(512), nn.GELU(), nn.Dropout(0.2))

    def features(self, x):
        return self.body(x)


class _DWSep(nn.Module):
    """MobileNet-v1 block: depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN + ReLU6."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
            nn.BatchNorm2d(cin), nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())

    def forward(self, x):
        return self.block(x)


class MobileNet(_Normalised):
    """Depthwise-separable MobileNet-style net: stride-2 stem, four separable blocks, global
    average pooling. D = 64."""

    def __init__(self, num_classes, mean, std):
        super().__init__(64, num_classes, mean, std)
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),  # 14
            _DWSep(16, 32, 1), _DWSep(32, 48, 2),                                                  # 7
            _DWSep(48, 64, 1), _DWSep(64, 64, 2),                                                  # 4
            nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def features(self, x):
        return self.body(x)


class AllConv(_Normalised):
    """All-convolutional net (Springenberg et al. style): strided convs instead of pooling, no
    normalisation layers, LeakyReLU, a 1x1 conv to D channels and global average pooling. D = 128."""

    def __init__(self, num_classes, mean, std):
        super().__init__(128, num_classes, mean, std)
        act = nn.LeakyReLU(0.1)
        self.body = nn.Sequential(
            nn.Conv2d(1, 24, 3, padding=1), act,
            nn.Conv2d(24, 32, 3, stride=2, padding=1), act,      # 14
            nn.Conv2d(32, 48, 3, padding=1), act,
            nn.Conv2d(48, 64, 3, stride=2, padding=1), act,      # 7
            nn.Conv2d(64, 128, 1), act,
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        # Without normalisation layers PyTorch's default init shrinks the signal layer by layer
        # and SGD barely moves it; He init for LeakyReLU trains.
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def features(self, x):
        return self.body(x)


def build(arch, num_classes, mean, std):
    cls = {"vgg": VGG, "wmlp": WideMLP, "mobile": MobileNet, "allconv": AllConv}[arch]
    return cls(num_classes, mean=mean, std=std)


def to_torchscript(model, path):
    """Scripts the model in eval mode and saves it. The result is what the dock receives."""
    model = model.eval()
    scripted = torch.jit.script(model)
    scripted.save(path)
    return scripted
