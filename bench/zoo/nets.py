"""The four benchmark architectures, all following the modeldock model contract:

    forward(x): float32 [N, 1, 28, 28] in [0, 1] -> logits [N, K]
    embed(x):   same input -> penultimate features [N, D]   (@torch.jit.export)

Each network carries its own input normalisation (mean/std buffers of its training data), so a
caller only ever passes raw [0, 1] pixels. Kept small on purpose: the ground truth fine-tunes every
model on every task on a shared 2-core CPU.
"""
import torch
from torch import nn
import torch.nn.functional as F

ARCHITECTURES = ("mlp", "lenet", "cnn", "resnet")


class _Normalised(nn.Module):
    """Base: normalisation buffers + a replaceable linear head on top of features()."""

    def __init__(self, feature_dim, num_classes, mean=0.5, std=0.5):
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


class MLP(_Normalised):
    def __init__(self, num_classes, **kw):
        super().__init__(128, num_classes, **kw)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
                                  nn.Linear(256, 128), nn.ReLU())

    def features(self, x):
        return self.body(x)


class LeNet(_Normalised):
    """LeNet-5 shape: two 5x5 convs with max-pooling, two fully connected layers."""

    def __init__(self, num_classes, **kw):
        super().__init__(84, num_classes, **kw)
        self.body = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())

    def features(self, x):
        return self.body(x)


class SmallCNN(_Normalised):
    """Three 3x3 conv blocks with batch norm, global average pooling, one hidden layer."""

    def __init__(self, num_classes, **kw):
        super().__init__(96, num_classes, **kw)

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(1, 16), block(16, 32), block(32, 48),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(48, 96), nn.ReLU())

    def features(self, x):
        return self.body(x)


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(_Normalised):
    """ResNet with one basic block per stage, 3 stages of 8/16/32 channels (14x14, 7x7, 4x4)."""

    def __init__(self, num_classes, **kw):
        super().__init__(32, num_classes, **kw)
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU())
        self.stages = nn.Sequential(_BasicBlock(8, 8, 1), _BasicBlock(8, 16, 2),
                                    _BasicBlock(16, 32, 2))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def features(self, x):
        return self.pool(self.stages(self.stem(x)))


def build(arch, num_classes, mean=0.5, std=0.5):
    cls = {"mlp": MLP, "lenet": LeNet, "cnn": SmallCNN, "resnet": SmallResNet}[arch]
    return cls(num_classes, mean=mean, std=std)


def to_torchscript(model, path):
    """Scripts the model in eval mode and saves it. The result is what the dock receives."""
    model = model.eval()
    scripted = torch.jit.script(model)
    scripted.save(path)
    return scripted
