"""Colour networks following the modeldock model contract, and their training loop.

Contract: a TorchScript module whose forward(x) takes float32 [N, 3, H, W] in [0, 1] and returns
logits [N, K]; it carries its own per-channel normalisation and exports embed(x) -> [N, D]
penultimate features (@torch.jit.export). The reference encoders wrap such a network in
nets.Embedder (forward = embed).
"""
import numpy as np
import torch
from torch import nn


class ChannelNormalise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def channel_stats(images_u8):
    """Per-channel mean and std in [0, 1] of uint8 [N, 3, H, W]."""
    x = images_u8.astype(np.float64) / 255.0
    return x.mean(axis=(0, 2, 3)).tolist(), (x.std(axis=(0, 2, 3)) + 1e-3).tolist()


class ColourCNN(nn.Module):
    """conv3x3-BN-ReLU-maxpool blocks (width, 2*width, 3*width channels) down to 4x4, then
    Linear(feature_dim) -> ReLU -> head. At input 64 a stride-2 conv stem (width/2 channels) first
    halves the image, so the 64 px network costs little more than the 32 px one."""

    def __init__(self, num_classes, mean, std, input_size=32, feature_dim=64, width=16):
        super().__init__()
        if input_size not in (32, 64):
            raise ValueError(f"ColourCNN: input_size must be 32 or 64, got {input_size}")
        self.normalise = ChannelNormalise(mean, std)
        layers = []
        c_in = 3
        if input_size == 64:
            stem = max(8, width // 2)
            layers += [nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(stem), nn.ReLU()]
            c_in = stem
        for c_out in (width, 2 * width, 3 * width):  # 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        layers += [nn.Flatten(), nn.Linear(c_in * 16, feature_dim), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x):
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x):
        return self.features(self.normalise(x))


def to_float(images_u8):
    """uint8 [N, 3, H, W] -> float32 [N, 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images_u8, dtype=np.float32)).div_(255.0)


def train(net, images_u8, labels, epochs, seed, batch_size=128, lr=1e-2, flip=False):
    """Adam + one-cycle schedule + cross-entropy, seeded shuffling; optional random horizontal
    flips. Returns the training accuracy of the last epoch."""
    gen = torch.Generator().manual_seed(seed)
    x = to_float(images_u8)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    correct = 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        correct = 0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            xb = x[idx]
            if flip:
                mask = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(mask.view(-1, 1, 1, 1), xb.flip(3), xb)
            logits = net(xb)
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
    net.eval()
    return correct / len(x)


@torch.no_grad()
def accuracy(net, images_u8, labels, batch_size=500):
    net.eval()
    y = np.asarray(labels, dtype=np.int64)
    correct = 0
    for start in range(0, len(y), batch_size):
        pred = net(to_float(images_u8[start:start + batch_size])).argmax(1).numpy()
        correct += int((pred == y[start:start + batch_size]).sum())
    return correct / len(y)
