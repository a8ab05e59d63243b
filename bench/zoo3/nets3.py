"""The five zoo3 architectures - none of them is in bench/zoo or bench/zoo2 - all following the
modeldock model contract:

    forward(x): float32 [N, 1, 28, 28] in [0, 1] -> logits [N, K]
    embed(x):   same input -> penultimate features [N, D]   (@torch.jit.export)

zoo3 spans the embedding widths of real docks (D = 32 to 1,568) and five input conventions:

    flat     D = 1568: two strided convs, no pooling, the 32x7x7 map flattened; raw [0, 1]
             input, no normalisation at all, unbounded ReLU features
    tiny     D = 32: MLP 784-128-32 with tanh (bounded features); per-pixel standardisation
             (a 28x28 mean and std of the model's own training set)
    cos      D = 96: BatchNorm CNN, global average pooling, L2-normalised embedding and a cosine
             classifier (scale 10); own-set mean/std
    wide     D = 1024: MLP 784-1024 (ReLU, dropout 0.5, no norm layers); [0, 1] -> [-1, 1]
    gap      D = 384: InstanceNorm CNN with SiLU, 1x1 conv to 384 channels, global average
             pooling; no input scaling, InstanceNorm absorbs it
Kept small: the ground truth fine-tunes every model on every task on a shared 2-core CPU.
"""
import torch
from torch import nn
import torch.nn.functional as F

ARCHITECTURES = ("flat", "tiny", "cos", "wide", "gap")
FEATURE_DIM = {"flat": 1568, "tiny": 32, "cos": 96, "wide": 1024, "gap": 384}


class _Model(nn.Module):
    """Base: input normalisation buffers (scalars or a 28x28 map) + a linear head on features()."""

    def __init__(self, feature_dim, num_classes, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        raise NotImplementedError

    @torch.jit.export
    def embed(self, x):
        return self.features((x - self.mean) / self.std)

    def forward(self, x):
        return self.head(self.embed(x))


class Flat(_Model):
    def __init__(self, num_classes, mean, std):
        super().__init__(1568, num_classes, mean, std)
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),    # 14
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),   # 7
            nn.Flatten())

    def features(self, x):
        return self.body(x)


class Tiny(_Model):
    def __init__(self, num_classes, mean, std):
        super().__init__(32, num_classes, mean, std)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.Tanh(),
                                  nn.Linear(128, 32), nn.Tanh())

    def features(self, x):
        return self.body(x)


class Cos(_Model):
    """The head is a cosine classifier: logits = 10 * normalised(W) . embed (embed has norm 1)."""

    def __init__(self, num_classes, mean, std):
        super().__init__(96, num_classes, mean, std)

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                    nn.MaxPool2d(2)]

        self.body = nn.Sequential(*block(1, 32), *block(32, 64), nn.Conv2d(64, 96, 3, padding=1),
                                  nn.BatchNorm2d(96), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())

    def features(self, x):
        return F.normalize(self.body(x), dim=1)

    def forward(self, x):
        return 10.0 * F.linear(self.embed(x), F.normalize(self.head.weight, dim=1))


class Wide(_Model):
    def __init__(self, num_classes, mean, std):
        super().__init__(1024, num_classes, mean, std)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Dropout(0.5))

    def features(self, x):
        return self.body(x)


class Gap(_Model):
    def __init__(self, num_classes, mean, std):
        super().__init__(384, num_classes, mean, std)

        def block(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.InstanceNorm2d(cout, affine=True),
                    nn.SiLU()]

        self.body = nn.Sequential(*block(1, 24, 1), *block(24, 48, 2), *block(48, 64, 2),
                                  nn.Conv2d(64, 384, 1), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())

    def features(self, x):
        return self.body(x)


def build(arch, num_classes, mean, std):
    cls = {"flat": Flat, "tiny": Tiny, "cos": Cos, "wide": Wide, "gap": Gap}[arch]
    return cls(num_classes, mean=mean, std=std)


def to_torchscript(model, path):
    """Scripts the model in eval mode and saves it. The result is what the dock receives."""
    model = model.eval()
    scripted = torch.jit.script(model)
    scripted.save(path)
    return scripted
