"""Small networks following the modeldock model contract, and a plain training loop.

Contract: a TorchScript module whose forward(x) takes float32 [N, 1, 28, 28] in [0, 1] and returns
logits [N, K]; it carries its own input normalisation and exports embed(x) -> [N, D] penultimate
features (@torch.jit.export).
"""
import numpy as np
import torch
from torch import nn

# Fashion-MNIST pixel statistics (train split), used by every image network here.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530


class _Normalise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x):
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """3 x (conv3x3-BN-ReLU-maxpool) with width, 2*width, 3*width channels -> Linear(feature_dim)
    -> ReLU -> head. BatchNorm lets it converge in one or two epochs; ~50k parameters at width 16."""

    def __init__(self, num_classes, feature_dim=64, width=16):
        super().__init__()
        self.normalise = _Normalise(PIXEL_MEAN, PIXEL_STD)
        layers = []
        channels = [1, width, 2 * width, 3 * width]
        for c_in, c_out in zip(channels[:-1], channels[1:]):  # 28 -> 14 -> 7 -> 3
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(), nn.MaxPool2d(2)]
        layers += [nn.Flatten(), nn.Linear(3 * width * 9, feature_dim), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x):
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x):
        return self.features(self.normalise(x))


class MLP(nn.Module):
    """784 -> hidden -> feature_dim -> head."""

    def __init__(self, num_classes, hidden=128, feature_dim=64):
        super().__init__()
        self.normalise = _Normalise(PIXEL_MEAN, PIXEL_STD)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(),
                                      nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x):
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x):
        return self.features(self.normalise(x))


class Embedder(nn.Module):
    """Wraps a trained network so that forward(x) returns its embed(x): the reference encoder."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.embed(x)


def to_float(images_u8):
    """uint8 [N, 28, 28] or [N, 1, 28, 28] -> float32 [N, 1, 28, 28] in [0, 1]."""
    x = torch.from_numpy(np.array(images_u8, dtype=np.float32)).div_(255.0)
    return x.view(x.shape[0], 1, 28, 28)


def train(net, images_u8, labels, epochs, seed, batch_size=128, lr=2e-3):
    """Adam + cross-entropy, seeded shuffling. Returns training accuracy of the last epoch."""
    gen = torch.Generator().manual_seed(seed)
    x = to_float(images_u8)
    y = torch.from_numpy(np.array(labels, dtype=np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * ((len(x) + batch_size - 1) // batch_size))
    net.train()
    correct = 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        correct = 0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            logits = net(x[idx])
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
    net.eval()
    return correct / len(x)


@torch.no_grad()
def accuracy(net, images_u8, labels, batch_size=1000):
    net.eval()
    x = to_float(images_u8)
    y = torch.from_numpy(np.array(labels, dtype=np.int64))
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += int((net(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum())
    return correct / len(x)
