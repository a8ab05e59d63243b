"""Architectures of the speech zoo. The log-mel CNN, the GRU over mel frames and the pooled-
statistics MLP are scripts/assets/audio_nets.py's (the dock's audio demo models); this file adds
a small Transformer encoder over mel frames, on the same LogMel frontend, so every model follows
the audio contract: forward(x float32 [N, 16000], 16 kHz mono) -> logits [N, K],
embed(x) -> [N, D], features computed inside (torch.stft + mel filters).

    net = build("transformer", num_classes=10, size="l")
    audio_nets.train(net, audio_nets.log_mels(clips), labels, epochs, seed, lr=LR["transformer"])
"""
import os
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
sys.path.insert(0, os.path.join(HERE, "..", "zoo_text"))
from assets import audio_nets as an  # noqa: E402
from nets_text import EncoderBlock  # noqa: E402  (pre-LN block written with plain ops)


class MelTransformer(nn.Module):
    """Log-mel [MELS, FRAMES] -> patches of `patch` frames (a Linear over the stacked frames, as a
    ViT embeds image patches) + learned positions -> `layers` pre-LN encoder blocks -> LayerNorm
    -> mean over patches -> Linear -> ReLU features -> head. A 1 s clip has 101 frames: the last
    (101 % patch) are dropped, so 4-frame patches give 25 positions."""

    def __init__(self, num_classes: int, dim: int = 64, heads: int = 4, ff: int = 128,
                 layers: int = 2, feature_dim: int = 64, patch: int = 4, max_patches: int = 64):
        super().__init__()
        self.frontend = an.LogMel()
        self.patch = patch
        self.embed_patch = nn.Linear(an.MELS * patch, dim)
        self.position = nn.Embedding(max_patches, dim)
        self.blocks = nn.ModuleList([EncoderBlock(dim, heads, ff) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Sequential(nn.Linear(dim, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        n, mels, frames = mel.shape
        count = min(frames // self.patch, self.position.num_embeddings)
        x = mel[:, :, :count * self.patch].transpose(1, 2).reshape(n, count, mels * self.patch)
        h = self.embed_patch(x) + self.position(torch.arange(count)).unsqueeze(0)
        no_mask = torch.zeros([n, 1, 1, count], dtype=h.dtype)
        for block in self.blocks:
            h = block(h, no_mask)
        return self.proj(self.norm(h).mean(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.frontend(x))


# Peak learning rate of audio_nets.train's one-cycle schedule, per architecture.
LR = {"cnn": 4e-3, "gru": 5e-3, "transformer": 2e-3, "mlp": 5e-3}
ARCHS = tuple(LR)


def build(arch, num_classes, size="l"):
    """A fresh net (size "l" or "s": the small one has about half the width)."""
    small = size == "s"
    if arch == "cnn":
        return an.MelCNN(num_classes, width=8 if small else 16, feature_dim=32 if small else 64)
    if arch == "gru":
        return an.MelGRU(num_classes, hidden=32 if small else 64, feature_dim=32 if small else 48)
    if arch == "transformer":
        return MelTransformer(num_classes, dim=32 if small else 64, heads=4,
                              ff=64 if small else 128, layers=1 if small else 2,
                              feature_dim=32 if small else 64)
    if arch == "mlp":
        return an.PooledMLP(num_classes, hidden=64 if small else 128,
                            feature_dim=32 if small else 64)
    raise ValueError(f"unknown audio architecture {arch!r}")
