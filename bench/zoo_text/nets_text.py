"""Architectures of the text zoo. The n-gram MLP, the 1-D CNN and the GRU are
scripts/assets/text_nets.py's (the dock's text demo models); this file adds an LSTM and a small
Transformer encoder over the same TorchScript byte tokenizer, so every model follows the text
contract: forward(texts: List[str]) -> logits [N, K], embed(texts) -> [N, D], tokenizer inside.

    net = build("transformer", num_classes=8, size="l")
    tn.train(net, texts, labels, epochs, seed, lr=LR["transformer"])
"""
import math
import os
import sys
from typing import List, Tuple

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts"))
from assets import text_nets as tn  # noqa: E402


class CharLSTM(nn.Module):
    """Byte embeddings -> one-layer LSTM -> the hidden state at the END marker -> Linear -> ReLU
    features -> head (CharGRU with an LSTM cell)."""

    def __init__(self, num_classes: int, emb: int = 24, hidden: int = 64, feature_dim: int = 48,
                 max_bytes: int = 160):
        super().__init__()
        self.max_bytes = max_bytes
        self.byte_embedding = nn.Embedding(tn.VOCAB, emb, padding_idx=tn.PAD)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.proj = nn.Sequential(nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def tokens(self, text: str) -> torch.Tensor:
        return tn.text_bytes(text, self.max_bytes)

    def collate(self, items: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return tn.collate_padded(items, 2)

    def features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.byte_embedding(x))
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return self.proj(out.gather(1, last).squeeze(1))

    def forward(self, texts: List[str]) -> torch.Tensor:
        return self.head(self.embed(texts))

    @torch.jit.export
    def embed(self, texts: List[str]) -> torch.Tensor:
        x, lengths = self.collate([self.tokens(t) for t in texts])
        return self.features(x, lengths)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm self-attention + GELU MLP, written with plain ops (no fast path), with a key
    mask so that padding never changes a real position's output."""

    def __init__(self, dim: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Linear(ff, dim))

    def forward(self, h: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        n, length, dim = h.shape
        hd = dim // self.heads
        q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=2)
        q = q.reshape(n, length, self.heads, hd).transpose(1, 2)
        k = k.reshape(n, length, self.heads, hd).transpose(1, 2)
        v = v.reshape(n, length, self.heads, hd).transpose(1, 2)
        att = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd) + key_bias
        mixed = torch.matmul(torch.softmax(att, dim=3), v).transpose(1, 2).reshape(n, length, dim)
        h = h + self.out(mixed)
        return h + self.mlp(self.norm2(h))


class ByteTransformer(nn.Module):
    """Byte embeddings -> non-overlapping patches of `patch` bytes (a strided Conv1d, as a ViT
    embeds image patches) + learned positions -> `layers` encoder blocks -> LayerNorm -> mean over
    the patches that hold a real byte -> Linear -> ReLU features -> head. Patches keep attention
    cheap on CPU (max_bytes / patch positions)."""

    def __init__(self, num_classes: int, dim: int = 64, heads: int = 4, ff: int = 128,
                 layers: int = 2, feature_dim: int = 64, max_bytes: int = 254, patch: int = 4):
        super().__init__()
        self.max_bytes, self.patch = max_bytes, patch
        self.byte_embedding = nn.Embedding(tn.VOCAB, dim, padding_idx=tn.PAD)
        self.patches = nn.Conv1d(dim, dim, patch, stride=patch)
        self.position = nn.Embedding((max_bytes + 2 + patch - 1) // patch, dim)
        self.blocks = nn.ModuleList([EncoderBlock(dim, heads, ff) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Sequential(nn.Linear(dim, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def tokens(self, text: str) -> torch.Tensor:
        return tn.text_bytes(text, self.max_bytes)

    def collate(self, items: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        x, lengths = tn.collate_padded(items, self.patch)
        extra = (-x.shape[1]) % self.patch   # whole patches only
        if extra > 0:
            x = torch.cat([x, torch.full([x.shape[0], extra], tn.PAD, dtype=torch.long)], 1)
        return x, lengths

    def features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.patches(self.byte_embedding(x).transpose(1, 2)).transpose(1, 2)  # [N, P, dim]
        count = h.shape[1]
        real = torch.div(lengths + self.patch - 1, self.patch, rounding_mode="floor")
        mask = torch.arange(count).unsqueeze(0) < real.unsqueeze(1)           # [N, P]
        key_bias = torch.zeros(mask.shape, dtype=torch.float32).masked_fill(
            torch.logical_not(mask), -1e9).view(x.shape[0], 1, 1, count)
        h = h + self.position(torch.arange(count)).unsqueeze(0)
        for block in self.blocks:
            h = block(h, key_bias)
        w = mask.to(torch.float32).unsqueeze(2)
        pooled = (self.norm(h) * w).sum(1) / real.unsqueeze(1).to(torch.float32)
        return self.proj(pooled)

    def forward(self, texts: List[str]) -> torch.Tensor:
        return self.head(self.embed(texts))

    @torch.jit.export
    def embed(self, texts: List[str]) -> torch.Tensor:
        x, lengths = self.collate([self.tokens(t) for t in texts])
        return self.features(x, lengths)


# Peak learning rate of text_nets.train's one-cycle schedule, per architecture.
LR = {"ngram": 5e-3, "cnn": 3e-3, "gru": 1e-2, "lstm": 1e-2, "transformer": 2e-3}
ARCHS = tuple(LR)


def build(arch, num_classes, size="l", salt=0):
    """A fresh net (size "l" or "s": the small one has about half the width)."""
    small = size == "s"
    if arch == "ngram":
        return tn.NgramMLP(num_classes, buckets=4096 if small else 8192, dim=32 if small else 48,
                           hidden=64 if small else 96, feature_dim=32 if small else 48,
                           max_bytes=1000, salt=salt)
    if arch == "cnn":
        return tn.CharCNN(num_classes, emb=16 if small else 24, width=48 if small else 64,
                          feature_dim=48 if small else 64, max_bytes=256)
    if arch == "gru":
        return tn.CharGRU(num_classes, emb=16 if small else 24, hidden=48 if small else 64,
                          feature_dim=32 if small else 48, max_bytes=128)
    if arch == "lstm":
        return CharLSTM(num_classes, emb=16 if small else 24, hidden=48 if small else 64,
                        feature_dim=32 if small else 48, max_bytes=128)
    if arch == "transformer":
        return ByteTransformer(num_classes, dim=48 if small else 64, heads=4,
                               ff=96 if small else 128, layers=1 if small else 2,
                               feature_dim=48 if small else 64)
    raise ValueError(f"unknown text architecture {arch!r}")
