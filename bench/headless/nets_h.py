"""Feature extractors for zoo2h (bench/headless). Each follows modeldock's feature-extractor
contract:

    forward(x): float32 [N, 1, 28, 28] in [0, 1] -> features [N, D]   (no head, no class labels)

with the input normalisation inside the model. Training-only parts (the autoencoders' decoders,
the contrastive projectors) live in separate modules and are not exported.
"""
import torch
from torch import nn


class _Norm(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))


class ConvEncoder(_Norm):
    """Two strided 3x3 convs (BatchNorm, ReLU) then a linear bottleneck of width D (no
    activation): the encoder half of a convolutional autoencoder."""

    def __init__(self, dim, mean=0.2860, std=0.3530):
        super().__init__(mean, std)
        self.feature_dim = dim
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),   # 14x14
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),  # 7x7
            nn.Flatten(), nn.Linear(32 * 7 * 7, dim))

    def forward(self, x):
        return self.body((x - self.mean) / self.std)


class ConvDecoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(dim, 32 * 7 * 7), nn.ReLU())
        self.body = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1))

    def forward(self, z):
        return self.body(self.fc(z).view(-1, 32, 7, 7))  # logits of the pixel intensities


class MLPEncoder(_Norm):
    """784-H-D MLP encoder (ReLU hidden layer, linear bottleneck)."""

    def __init__(self, dim, hidden, mean=0.5, std=0.5):
        super().__init__(mean, std)
        self.feature_dim = dim
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(),
                                  nn.Linear(hidden, dim))

    def forward(self, x):
        return self.body((x - self.mean) / self.std)


class MLPDecoder(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def forward(self, z):
        return self.body(z).view(-1, 1, 28, 28)


class ContrastiveCNN(_Norm):
    """Small CNN backbone for SimCLR: three 3x3 conv blocks (BatchNorm, ReLU; max-pool after the
    first two), global average pooling, then a fully connected layer of width D with ReLU. The
    features are the backbone output (before the projector), as in SimCLR."""

    def __init__(self, dim, channels=(16, 32, 64), mean=0.5, std=0.5):
        super().__init__(mean, std)
        self.feature_dim = dim
        c1, c2, c3 = channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c3, dim), nn.ReLU())

    def forward(self, x):
        return self.body((x - self.mean) / self.std)


class Projector(nn.Module):
    def __init__(self, dim, out=64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, out))

    def forward(self, h):
        return self.body(h)


class AsEmbed(nn.Module):
    """Fine-tuning view of a feature extractor: embed(x) = forward(x) = the extractor's forward.
    Lets bench/zoo/finetune.py (which puts its new head on embed) fine-tune an extractor with
    exactly its own code; the parameters are the extractor's own."""

    def __init__(self, extractor):
        super().__init__()
        self.extractor = extractor

    @torch.jit.export
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)
