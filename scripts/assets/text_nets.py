"""Text networks following the modeldock text model contract, and their training loop.

Contract (issue 25): a TorchScript module whose forward(texts: List[str]) returns logits [N, K]
and whose exported embed(texts: List[str]) returns [N, D] penultimate features. The module carries
its own tokenizer, written in TorchScript so that Python and LibTorch (the dock) tokenize alike:

- TorchScript strings are UTF-8 bytes: slicing, len() and ord() act on bytes. Every tokenizer
  here therefore works on the first MAX bytes of the text (a cut through a multi-byte character
  only leaves its first bytes), with A-Z folded to a-z by arithmetic on the byte values (not
  str.lower(), whose C++ side follows the process's C locale), between a start marker (256) and
  an end marker (257); 258 pads.
- The empty string, NUL and other control characters, any Unicode and 64 KiB strings are valid
  input: they become at least the two markers.

The tokenizer functions are scripted at import, so training (eager) and the saved module run the
same code. Every net exposes tokens(text) -> Tensor, collate(list) -> (Tensor, Tensor) and
features(a, b) -> [N, D]; forward = head(embed(texts)), embed = features(collate(tokens)).
"""
from typing import List, Tuple

import numpy as np
import torch
from torch import nn

START, END, PAD = 256, 257, 258
VOCAB = 259


@torch.jit.script
def text_bytes(text: str, max_bytes: int) -> torch.Tensor:
    """int64 [L + 2]: START, the first max_bytes bytes of the text with A-Z folded to a-z, END."""
    ids: List[int] = [256]
    for c in text[:max_bytes]:
        ids.append(ord(c))
    ids.append(257)
    b = torch.tensor(ids, dtype=torch.long)
    return torch.where((b >= 65) & (b <= 90), b + 32, b)


@torch.jit.script
def hashed_ngrams(text: str, max_bytes: int, buckets: int, salt: int) -> torch.Tensor:
    """Bucket ids of the byte 1-, 2- and 3-grams of text_bytes (markers take part in 2- and
    3-grams, so the empty string has one 2-gram). Disjoint code ranges per n, then a fixed
    multiply-xorshift hash into [0, buckets)."""
    b = text_bytes(text, max_bytes)
    n = b.numel()
    uni = b[1:n - 1]
    bi = 1000 + b[:n - 1] * 263 + b[1:]
    tri = 100000 + (b[:n - 2] * 263 + b[1:n - 1]) * 263 + b[2:]
    h = torch.cat([uni, bi, tri]) * 2654435761 + salt
    h = torch.bitwise_xor(h, torch.bitwise_right_shift(h, 17))
    return torch.remainder(h, buckets)


@torch.jit.script
def collate_bags(items: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(ids, offsets) for nn.EmbeddingBag."""
    offsets: List[int] = []
    total = 0
    for t in items:
        offsets.append(total)
        total += t.numel()
    if len(items) == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(items), torch.tensor(offsets, dtype=torch.long)


@torch.jit.script
def collate_padded(items: List[torch.Tensor], min_len: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """([N, L] padded with PAD, lengths [N]); L >= min_len."""
    longest = min_len
    for t in items:
        longest = max(longest, t.numel())
    x = torch.full([len(items), longest], 258, dtype=torch.long)
    lengths: List[int] = []
    for i, t in enumerate(items):
        x[i, :t.numel()] = t
        lengths.append(t.numel())
    return x, torch.tensor(lengths, dtype=torch.long)


class NgramMLP(nn.Module):
    """Hashed byte n-grams (1..3) -> EmbeddingBag mean -> MLP -> ReLU features -> head."""

    def __init__(self, num_classes: int, buckets: int = 16384, dim: int = 64, hidden: int = 128,
                 feature_dim: int = 64, max_bytes: int = 2000, salt: int = 0,
                 dropout: float = 0.1):
        super().__init__()
        self.buckets, self.max_bytes, self.salt = buckets, max_bytes, salt
        self.bag = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def tokens(self, text: str) -> torch.Tensor:
        return hashed_ngrams(text, self.max_bytes, self.buckets, self.salt)

    def collate(self, items: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return collate_bags(items)

    def features(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.bag(ids, offsets))

    def forward(self, texts: List[str]) -> torch.Tensor:
        return self.head(self.embed(texts))

    @torch.jit.export
    def embed(self, texts: List[str]) -> torch.Tensor:
        ids, offsets = self.collate([self.tokens(t) for t in texts])
        return self.features(ids, offsets)

    # Training only (not scripted): the bag mean as a sparse [N, buckets] x dense [buckets, dim]
    # product, whose backward is several times faster than EmbeddingBag's on CPU; same values.
    @torch.jit.unused
    def train_inputs(self, items: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([t.numel() for t in items])
        rows = torch.repeat_interleave(torch.arange(len(items)), lengths)
        means = torch.sparse_coo_tensor(torch.stack([rows, torch.cat(items)]),
                                        (1.0 / lengths.float())[rows],
                                        (len(items), self.buckets)).coalesce()
        return means, lengths

    @torch.jit.unused
    def train_features(self, means: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.sparse.mm(means, self.bag.weight))


class CharCNN(nn.Module):
    """Byte embeddings -> two 1-D convolutions (the second dilated) -> masked max and mean
    pooling -> Linear -> ReLU features -> head. Padding positions are zeroed after each
    convolution, so a text's output does not depend on how far its batch is padded."""

    def __init__(self, num_classes: int, emb: int = 32, width: int = 96, feature_dim: int = 64,
                 max_bytes: int = 400):
        super().__init__()
        self.max_bytes = max_bytes
        self.byte_embedding = nn.Embedding(VOCAB, emb, padding_idx=PAD)
        self.conv1 = nn.Conv1d(emb, width, 5, padding=2)
        self.conv2 = nn.Conv1d(width, width, 5, padding=4, dilation=2)
        self.proj = nn.Sequential(nn.Linear(2 * width, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def tokens(self, text: str) -> torch.Tensor:
        return text_bytes(text, self.max_bytes)

    def collate(self, items: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return collate_padded(items, 8)

    def features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1)
        mask = mask.to(torch.float32)
        h = self.byte_embedding(x).transpose(1, 2) * mask
        h = torch.relu(self.conv1(h)) * mask
        h = torch.relu(self.conv2(h)) * mask  # h >= 0: zeros at padding do not change the max
        pooled = torch.cat([h.amax(2), h.sum(2) / lengths.unsqueeze(1).to(h.dtype)], 1)
        return self.proj(pooled)

    def forward(self, texts: List[str]) -> torch.Tensor:
        return self.head(self.embed(texts))

    @torch.jit.export
    def embed(self, texts: List[str]) -> torch.Tensor:
        x, lengths = self.collate([self.tokens(t) for t in texts])
        return self.features(x, lengths)


class CharGRU(nn.Module):
    """Byte embeddings -> one-layer GRU -> the state at the END marker (padding comes after it,
    so it does not change that state) -> Linear -> ReLU features -> head."""

    def __init__(self, num_classes: int, emb: int = 32, hidden: int = 96, feature_dim: int = 64,
                 max_bytes: int = 200):
        super().__init__()
        self.max_bytes = max_bytes
        self.byte_embedding = nn.Embedding(VOCAB, emb, padding_idx=PAD)
        self.gru = nn.GRU(emb, hidden, batch_first=True)
        self.proj = nn.Sequential(nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def tokens(self, text: str) -> torch.Tensor:
        return text_bytes(text, self.max_bytes)

    def collate(self, items: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return collate_padded(items, 2)

    def features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.byte_embedding(x))
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return self.proj(out.gather(1, last).squeeze(1))

    def forward(self, texts: List[str]) -> torch.Tensor:
        return self.head(self.embed(texts))

    @torch.jit.export
    def embed(self, texts: List[str]) -> torch.Tensor:
        x, lengths = self.collate([self.tokens(t) for t in texts])
        return self.features(x, lengths)


class TextEmbedder(nn.Module):
    """A reference encoder: forward(texts) = net.embed(texts)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, texts: List[str]) -> torch.Tensor:
        return self.net.embed(texts)


def train(net, texts, labels, epochs, seed, batch_size=64, lr=3e-3):
    """Adam + one-cycle schedule + cross-entropy over seeded shuffles; texts are tokenized once.
    A net's train_inputs / train_features, when it has them, stand for collate / features.
    Returns the training accuracy of the last epoch."""
    gen = torch.Generator().manual_seed(seed)
    tokens = [net.tokens(t) for t in texts]
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    inputs = getattr(net, "train_inputs", net.collate)
    features = getattr(net, "train_features", net.features)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * ((len(tokens) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    correct = 0
    for _ in range(epochs):
        order = torch.randperm(len(tokens), generator=gen).tolist()
        correct = 0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            logits = net.head(features(*inputs([tokens[i] for i in idx])))
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
    net.eval()
    return correct / len(tokens)


@torch.no_grad()
def accuracy(net, texts, labels, batch_size=256):
    net.eval()
    y = np.asarray(labels, dtype=np.int64)
    correct = 0
    for start in range(0, len(y), batch_size):
        pred = net(list(texts[start:start + batch_size])).argmax(1).numpy()
        correct += int((pred == y[start:start + batch_size]).sum())
    return correct / len(y)
