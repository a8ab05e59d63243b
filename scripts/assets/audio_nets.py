"""Audio networks following the modeldock audio model contract, and their training loop.

Contract (issue 25): a TorchScript module whose forward(x: float32 [N, 16000], 16 kHz mono)
returns logits [N, K] and whose exported embed(x) returns [N, D] penultimate features. The module
computes its own features: every net here starts with LogMel (torch.stft, a Hann window and a
fixed mel filterbank built by mel_filterbank, both saved in the module as buffers).

Any float input is valid: NaN becomes 0, +-Inf and everything else is clipped to [-1, 1], the DC
offset is removed (uniform [0, 1] noise is valid input), and the log-mel floor keeps silence
finite. Every net exposes frontend(x) -> log-mel [N, MELS, FRAMES] and features(mel) -> [N, D];
forward = head(embed(x)), embed = features(frontend(x)). Training runs on precomputed log-mels.
"""
import math

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 400          # 25 ms
HOP = 160            # 10 ms -> 101 frames per second (centred frames)
MELS = 40
F_MIN, F_MAX = 20.0, 7600.0
LOG_FLOOR = 1e-6


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_fft=N_FFT, mels=MELS, rate=SAMPLE_RATE, f_min=F_MIN, f_max=F_MAX):
    """float32 [n_fft // 2 + 1, mels]: triangular filters equally spaced on the HTK mel scale,
    each of unit area over the FFT bins' frequencies (Slaney normalisation)."""
    freqs = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), mels + 2))
    fb = np.zeros((len(freqs), mels))
    for m in range(mels):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        rise = (freqs - lo) / (centre - lo)
        fall = (hi - freqs) / (hi - centre)
        fb[:, m] = np.maximum(0.0, np.minimum(rise, fall)) * 2.0 / (hi - lo)
    return fb.astype(np.float32)


class LogMel(nn.Module):
    """float32 [N, T] -> log mel power [N, MELS, T // HOP + 1], centred per clip (its mean over
    bands and frames subtracted: a gain changes nothing but the floor)."""

    def __init__(self):
        super().__init__()
        # TorchScript reads module attributes, not module-level constants.
        self.n_fft, self.hop, self.log_floor = N_FFT, HOP, LOG_FLOOR
        self.register_buffer("window", torch.hann_window(N_FFT))
        self.register_buffer("filters", torch.from_numpy(mel_filterbank()).t().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nan_to_num(x.to(torch.float32), 0.0, 1.0, -1.0).clamp(-1.0, 1.0)
        x = x - x.mean(1, keepdim=True)
        spec = torch.stft(x, self.n_fft, self.hop, self.n_fft, self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        power = spec.real * spec.real + spec.imag * spec.imag
        mel = torch.log(torch.matmul(self.filters, power) + self.log_floor)
        return (mel - mel.mean((1, 2), keepdim=True)) / 4.0


def _conv_block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(), nn.MaxPool2d(2))


class MelCNN(nn.Module):
    """Log-mel image [1, MELS, FRAMES] averaged over pairs of frames (20 ms) -> three conv blocks
    (3x3, BN, ReLU, 2x2 max-pool) -> mean and max over frequency and time -> Linear -> ReLU
    features -> head."""

    def __init__(self, num_classes: int, width: int = 16, feature_dim: int = 64):
        super().__init__()
        self.frontend = LogMel()
        self.convs = nn.Sequential(_conv_block(1, width), _conv_block(width, 2 * width),
                                   _conv_block(2 * width, 4 * width))
        self.proj = nn.Sequential(nn.Linear(8 * width, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.convs(nn.functional.avg_pool2d(mel.unsqueeze(1), (1, 2))).flatten(2)
        return self.proj(torch.cat([h.mean(2), h.amax(2)], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.frontend(x))


class MelGRU(nn.Module):
    """Mel frames [FRAMES, MELS] (every second frame) -> Linear -> one-layer GRU -> its last
    state and the mean of its outputs -> Linear -> ReLU features -> head."""

    def __init__(self, num_classes: int, hidden: int = 64, feature_dim: int = 48):
        super().__init__()
        self.frontend = LogMel()
        self.inp = nn.Sequential(nn.Linear(MELS, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.proj = nn.Sequential(nn.Linear(2 * hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        out, last = self.gru(self.inp(mel[:, :, ::2].transpose(1, 2)))
        return self.proj(torch.cat([last[0], out.mean(1)], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.frontend(x))


class PooledMLP(nn.Module):
    """Per-band mean and standard deviation of the log-mel over time, and of its frame-to-frame
    differences -> MLP -> ReLU features -> head."""

    def __init__(self, num_classes: int, hidden: int = 128, feature_dim: int = 64,
                 dropout: float = 0.1):
        super().__init__()
        self.frontend = LogMel()
        self.mlp = nn.Sequential(nn.Linear(4 * MELS, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        delta = mel[:, :, 1:] - mel[:, :, :-1]
        pooled = torch.cat([mel.mean(2), mel.std(2), delta.mean(2), delta.std(2)], 1)
        return self.mlp(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.frontend(x))


class AudioEmbedder(nn.Module):
    """A reference encoder: forward(x) = net.embed(x)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


@torch.no_grad()
def log_mels(clips, batch_size=256):
    """LogMel of float32 clips [N, T] (the frontend has no parameters: shared by all nets)."""
    frontend = LogMel()
    x = torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32))
    return torch.cat([frontend(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def train(net, mels, labels, epochs, seed, batch_size=64, lr=3e-3, time_shift=10):
    """Adam + one-cycle schedule + cross-entropy over seeded shuffles of precomputed log-mels,
    each batch rolled by up to `time_shift` frames (seeded). Returns the last epoch's training
    accuracy."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(y) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    correct = 0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        correct = 0
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            shift = int(torch.randint(-time_shift, time_shift + 1, (1,), generator=gen))
            logits = net.head(net.features(torch.roll(mels[idx], shift, 2)))
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
    net.eval()
    return correct / len(y)


@torch.no_grad()
def accuracy(net, clips, labels, batch_size=256):
    """Accuracy of the whole module (frontend included) on float32 clips [N, 16000]."""
    net.eval()
    y = np.asarray(labels, dtype=np.int64)
    x = torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32))
    correct = 0
    for start in range(0, len(y), batch_size):
        pred = net(x[start:start + batch_size]).argmax(1).numpy()
        correct += int((pred == y[start:start + batch_size]).sum())
    return correct / len(y)
