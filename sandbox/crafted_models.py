#!/usr/bin/python3
"""Writes the crafted (hostile or broken) TorchScript models of the sandbox tests.

Each is a 10-class model for [N, 1, 28, 28] images that misbehaves in one way. Usage:
    crafted_models.py OUT_DIR
writes OUT_DIR/<name>.pt for every model below and prints the names.
"""
import os
import sys
from typing import List

import torch
from torch import nn


class Good(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.body(x))

    @torch.jit.export
    def embed(self, x):
        return self.body(x)


class Raises(nn.Module):
    def forward(self, x):
        raise RuntimeError("this model always fails")


class HugeAllocation(nn.Module):  # one 160 GB tensor
    def forward(self, x):
        y = torch.zeros([40 * 1024 * 1024 * 1024], dtype=torch.float32)
        return x.flatten(1)[:, :10] + y[0]


class WrongWidth(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :7]


class IntegerOutputs(nn.Module):
    def forward(self, x):
        return (x.flatten(1)[:, :10] * 100).to(torch.int64)


class NanOnProbeLikeImages(nn.Module):
    """Finite on the uniform-noise admission batch, NaN on real images (many exact zeros)."""

    def forward(self, x):
        y = x.flatten(1)[:, :10]
        zeros = (x.flatten(1) == 0).sum()
        if bool(zeros > 0):
            return y * float("nan")
        return y


class OutOfBoundsStrided(nn.Module):
    def forward(self, x):
        return torch.as_strided(x, [x.size(0), 10], [1, 1000000000])


class HugeEmbed(nn.Module):
    """embed(x) returns 100,352 features per sample (the hostile run used 50,000,000)."""

    def forward(self, x):
        return x.flatten(1)[:, :10]

    @torch.jit.export
    def embed(self, x):
        return x.flatten(1).repeat(1, 128)


class MemoryHog(nn.Module):
    """Allocates 5 GiB in 256 MiB pieces on every call."""

    def forward(self, x):
        pieces: List[torch.Tensor] = []
        for i in range(20):
            pieces.append(torch.ones([64 * 1024 * 1024]) * float(i))
        total = torch.zeros([1])
        for p in pieces:
            total = total + p[-1]
        return x.flatten(1)[:, :10] + total


class ReservesAddressSpace(nn.Module):
    """Reserves 128 MiB per sample that it never touches (as allocators, arenas and thread stacks
    do): address space, not memory used. 16 samples fail under a 1536 MiB address-space limit."""

    def forward(self, x):
        reserved = torch.empty([x.size(0), 32 * 1024 * 1024])
        return x.flatten(1)[:, :10] + reserved.size(1) * 0.0


class PerSampleHog(nn.Module):
    """Fills 24 MiB per sample: a batch of 64 holds 1.5 GiB, 32 hold 768 MiB, 16 hold 384 MiB."""

    def forward(self, x):
        filled = torch.ones([x.size(0), 6 * 1024 * 1024])
        return x.flatten(1)[:, :10] + filled[:, :10]


class NeverReturns(nn.Module):
    def forward(self, x):
        y = x.flatten(1)[:, :10]
        i = 0
        while i >= 0:
            y = y + 0.0
            i = i + 1
        return y


class HangsOnProbing(nn.Module):
    """Answers the 4-sample admission batch, never returns on a larger (probing) batch."""

    def forward(self, x):
        y = x.flatten(1)[:, :10]
        if x.size(0) > 4:
            i = 0
            while i >= 0:
                y = y + 0.0
                i = i + 1
        return y


class HangsOnMarkedQueries(nn.Module):
    """Answers admission and probing; never returns on a query whose first pixel is exactly 0.5
    (no probe pixel is: probes are k / 255)."""

    def forward(self, x):
        y = x.flatten(1)[:, :10]
        if bool(x.flatten(1)[0, 0] == 0.5):
            i = 0
            while i >= 0:
                y = y + 0.0
                i = i + 1
        return y


def _spin(x: torch.Tensor) -> torch.Tensor:
    i = 0
    while i >= 0:
        x = x + 0.0
        i = i + 1
    return x


class SpawnsThreads(nn.Module):
    """Starts four inter-op tasks that never end and waits for them."""

    def forward(self, x):
        y = x.flatten(1)[:, :10]
        futures = [torch.jit.fork(_spin, y) for _ in range(4)]
        for f in futures:
            y = y + torch.jit.wait(f)
        return y


class ExtractorNonFinite(nn.Module):
    """A feature extractor whose features hold NaN (registered with --feature-extractor)."""

    def forward(self, x):
        f = x.flatten(1)[:, :8]
        return f / (f - f)


class ExtractorRagged(nn.Module):
    """A feature extractor returning [N, 2, 4] instead of [N, D]."""

    def forward(self, x):
        return x.flatten(1)[:, :8].reshape(-1, 2, 4)


class Layers(nn.Module):
    """A 10-class model that exports three layers through embed_layers: 'pixels' (7x7 average-
    pooled image, 49-d: what a Fashion-MNIST query's classes differ in), 'corners' (the four
    corner pixels, almost always 0 on Fashion-MNIST: uninformative) and 'hidden' (16-d)."""

    layer_names: List[str]

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.layer_names = ["pixels", "corners", "hidden"]
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.body(x))

    @torch.jit.export
    def embed_layers(self, x) -> List[torch.Tensor]:
        pixels = torch.nn.functional.avg_pool2d(x, 4).flatten(1)
        corners = torch.stack([x[:, 0, 0, 0], x[:, 0, 0, -1], x[:, 0, -1, 0], x[:, 0, -1, -1]], 1)
        return [pixels, corners, self.body(x)]


class LayersUnnamed(nn.Module):
    """embed_layers without layer_names, as a tuple: the dock names them layer0, layer1."""

    def forward(self, x):
        return x.flatten(1)[:, :10]

    @torch.jit.export
    def embed_layers(self, x):
        f = x.flatten(1)
        return (f[:, :8], f[:, 100:132])


class LayersRagged(nn.Module):
    """The second layer is [N, 2, 4] instead of [N, D]."""

    def forward(self, x):
        return x.flatten(1)[:, :10]

    @torch.jit.export
    def embed_layers(self, x) -> List[torch.Tensor]:
        f = x.flatten(1)
        return [f[:, :8], f[:, :8].reshape(-1, 2, 4)]


class LayersNonFinite(nn.Module):
    """The second layer holds NaN."""

    def forward(self, x):
        return x.flatten(1)[:, :10]

    @torch.jit.export
    def embed_layers(self, x) -> List[torch.Tensor]:
        f = x.flatten(1)[:, :8]
        return [f, f / (f - f)]


class LayersTooMany(nn.Module):
    """Twelve layers (the dock's default maximum is 8)."""

    def forward(self, x):
        return x.flatten(1)[:, :10]

    @torch.jit.export
    def embed_layers(self, x) -> List[torch.Tensor]:
        f = x.flatten(1)
        return [f[:, i:i + 4] for i in range(12)]


class LayersMisnamed(nn.Module):
    """Two layers but three names."""

    layer_names: List[str]

    def __init__(self):
        super().__init__()
        self.layer_names = ["a", "b", "c"]

    def forward(self, x):
        return x.flatten(1)[:, :10]

    @torch.jit.export
    def embed_layers(self, x) -> List[torch.Tensor]:
        f = x.flatten(1)
        return [f[:, :4], f[:, 4:8]]


class TextCounts(nn.Module):
    """A text model: forward(texts) -> counts of 'a', 'e' and ' ' [N, 3]; embed doubles them."""

    def counts(self, texts: List[str]) -> torch.Tensor:
        rows: List[List[float]] = []
        for t in texts:
            rows.append([float(t.count("a")), float(t.count("e")), float(t.count(" "))])
        return torch.tensor(rows).reshape(len(texts), 3)

    def forward(self, texts: List[str]) -> torch.Tensor:
        return self.counts(texts)

    @torch.jit.export
    def embed(self, texts: List[str]) -> torch.Tensor:
        return self.counts(texts) * 2.0


class TextFailsOnControl(nn.Module):
    """A text model whose tokenizer refuses control characters."""

    def forward(self, texts: List[str]) -> torch.Tensor:
        for t in texts:
            assert "\x1b" not in t, "escape character in the text"
        return torch.zeros(len(texts), 3)


MODELS = {
    "text_counts": TextCounts,
    "text_fails_on_control": TextFailsOnControl,
    "good": Good,
    "layers": Layers,
    "layers_unnamed": LayersUnnamed,
    "layers_ragged": LayersRagged,
    "layers_non_finite": LayersNonFinite,
    "layers_too_many": LayersTooMany,
    "layers_misnamed": LayersMisnamed,
    "extractor_non_finite": ExtractorNonFinite,
    "extractor_ragged": ExtractorRagged,
    "raises": Raises,
    "huge_allocation": HugeAllocation,
    "wrong_width": WrongWidth,
    "integer_outputs": IntegerOutputs,
    "nan_on_probe_like_images": NanOnProbeLikeImages,
    "out_of_bounds_strided": OutOfBoundsStrided,
    "huge_embed": HugeEmbed,
    "memory_hog": MemoryHog,
    "reserves_address_space": ReservesAddressSpace,
    "per_sample_hog": PerSampleHog,
    "never_returns": NeverReturns,
    "hangs_on_probing": HangsOnProbing,
    "hangs_on_marked_queries": HangsOnMarkedQueries,
    "spawns_threads": SpawnsThreads,
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, cls in MODELS.items():
        torch.jit.script(cls().eval()).save(os.path.join(out, name + ".pt"))
        print(name)


if __name__ == "__main__":
    main()
