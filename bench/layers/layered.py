"""Multi-layer versions of the bench/zoo (nets.py) and zoo2 (nets2.py) architectures.

Each class subclasses the original architecture, so the parameters, state_dict keys, forward(x)
(logits) and embed(x) are the original ones; it adds the model-contract extension

    embed_layers(x) -> List[Tensor]     each [N, D_l], shallow to deep, the last one = embed(x)
    layer_names: List[str]              same length

and `upto(x, k)`, which computes the layers 0..k only (the truncated network used by the
per-layer fine-tuning views, see LayerView). Intermediate conv maps are reduced with
adaptive average pooling to a small grid (2x2 to 4x4) and flattened, so a shallow layer keeps
some spatial information and stays at most ~512 wide.
"""
import os
import sys
from typing import List

import torch
from torch import nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "zoo"))
sys.path.insert(0, os.path.join(HERE, "..", "zoo2"))
import nets  # noqa: E402
import nets2  # noqa: E402


def _grid(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.flatten(F.adaptive_avg_pool2d(x, k), 1)


# ----------------------------------------------------------------------------- bench/zoo (zoo-A)

class LayeredMLP(nets.MLP):
    # body: Flatten, Linear(784,256), ReLU, Linear(256,128), ReLU
    def __init__(self, num_classes, **kw):
        super().__init__(num_classes, **kw)
        self.layer_names = ["fc1", "fc2"]

    def upto(self, x: torch.Tensor, k: int) -> List[torch.Tensor]:
        x = (x - self.mean) / self.std
        out: List[torch.Tensor] = []
        h = self.body[2](self.body[1](self.body[0](x)))
        out.append(h)
        if k <= 0:
            return out
        h = self.body[4](self.body[3](h))
        out.append(h)
        return out

    @torch.jit.export
    def embed_layers(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.upto(x, 99)


class LayeredLeNet(nets.LeNet):
    # body: 0 conv1, 1 relu, 2 pool, 3 conv2, 4 relu, 5 pool, 6 flatten, 7 fc1, 8 relu, 9 fc2, 10 relu
    def __init__(self, num_classes, **kw):
        super().__init__(num_classes, **kw)
        self.layer_names = ["conv1", "conv2", "fc1", "fc2"]

    def upto(self, x: torch.Tensor, k: int) -> List[torch.Tensor]:
        x = (x - self.mean) / self.std
        out: List[torch.Tensor] = []
        h = self.body[2](self.body[1](self.body[0](x)))      # 6 x 14 x 14
        out.append(_grid(h, 4))                               # 96
        if k <= 0:
            return out
        h = self.body[6](self.body[5](self.body[4](self.body[3](h))))  # 16*5*5 = 400
        out.append(h)
        if k <= 1:
            return out
        h = self.body[8](self.body[7](h))                     # 120
        out.append(h)
        if k <= 2:
            return out
        h = self.body[10](self.body[9](h))                    # 84 = embed
        out.append(h)
        return out

    @torch.jit.export
    def embed_layers(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.upto(x, 99)


class LayeredCNN(nets.SmallCNN):
    # body: 0 block1, 1 block2, 2 block3, 3 GAP, 4 flatten, 5 fc, 6 relu
    def __init__(self, num_classes, **kw):
        super().__init__(num_classes, **kw)
        self.layer_names = ["block1", "block2", "pool", "fc"]

    def upto(self, x: torch.Tensor, k: int) -> List[torch.Tensor]:
        x = (x - self.mean) / self.std
        out: List[torch.Tensor] = []
        h = self.body[0](x)                                   # 16 x 14 x 14
        out.append(_grid(h, 4))                               # 256
        if k <= 0:
            return out
        h = self.body[1](h)                                   # 32 x 7 x 7
        out.append(_grid(h, 3))                               # 288
        if k <= 1:
            return out
        h = self.body[4](self.body[3](self.body[2](h)))       # 48
        out.append(h)
        if k <= 2:
            return out
        h = self.body[6](self.body[5](h))                     # 96 = embed
        out.append(h)
        return out

    @torch.jit.export
    def embed_layers(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.upto(x, 99)


class LayeredResNet(nets.SmallResNet):
    def __init__(self, num_classes, **kw):
        super().__init__(num_classes, **kw)
        self.layer_names = ["stem", "stage1", "stage2", "pool"]

    def upto(self, x: torch.Tensor, k: int) -> List[torch.Tensor]:
        x = (x - self.mean) / self.std
        out: List[torch.Tensor] = []
        h = self.stem(x)                                      # 8 x 14 x 14
        out.append(_grid(h, 4))                               # 128
        if k <= 0:
            return out
        h = self.stages[0](h)                                 # 8 x 14 x 14
        out.append(_grid(h, 4))                               # 128
        if k <= 1:
            return out
        h = self.stages[1](h)                                 # 16 x 7 x 7
        out.append(_grid(h, 4))                               # 256
        if k <= 2:
            return out
        h = self.pool(self.stages[2](h))                      # 32 = embed
        out.append(h)
        return out

    @torch.jit.export
    def embed_layers(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.upto(x, 99)


# ----------------------------------------------------------------------------- zoo2 (zoo-B)

class LayeredVGG(nets2.VGG):
    # body: 0 conv 1 gn 2 relu 3 conv 4 gn 5 relu 6 pool | 7 conv 8 gn 9 relu 10 conv 11 gn 12 relu
    #       13 pool 14 pool(ceil) 15 flatten 16 fc 17 relu
    def __init__(self, num_classes, mean, std):
        super().__init__(num_classes, mean, std)
        self.layer_names = ["stage1", "stage2", "fc"]

    def upto(self, x: torch.Tensor, k: int) -> List[torch.Tensor]:
        x = (x - self.mean) / self.std
        out: List[torch.Tensor] = []
        h = x
        for i, m in enumerate(self.body):
            h = m(h)
            if i == 6:
                out.append(_grid(h, 4))                       # 16 x 14 x 14 -> 256
                if k <= 0:
                    return out
            elif i == 15:
                out.append(h)                                 # 32 x 4 x 4 = 512
                if k <= 1:
                    return out
        out.append(h)                                         # 256 = embed
        return out

    @torch.jit.export
    def embed_layers(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.upto(x, 99)


class LayeredWideMLP(nets2.WideMLP):
    # body: 0 flatten 1 fc 2 ln 3 gelu 4 drop 5 fc 6 ln 7 gelu 8 drop
    def __init__(self, num_classes, mean, std):
        super().__init__(num_classes, mean, std)
        self.layer_names = ["fc1", "fc2"]

    def upto(self, x: torch.Tensor, k: int) -> List[torch.Tensor]:
        x = (x - self.mean) / self.std
        out: List[torch.Tensor] = []
        h = x
        for i, m in enumerate(self.body):
            h = m(h)
            if i == 4:
                out.append(h)                                 # 512
                if k <= 0:
                    return out
        out.append(h)                                         # 512 = embed
        return out

    @torch.jit.export
    def embed_layers(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.upto(x, 99)


class LayeredMobileNet(nets2.MobileNet):
    # body: 0 conv 1 bn 2 relu6 | 3 dw(16,32) 4 dw(32,48,s2) 5 dw(48,64) 6 dw(64,64,s2) 7 GAP 8 flatten
    def __init__(self, num_classes, mean, std):
        super().__init__(num_classes, mean, std)
        self.layer_names = ["stem", "block2", "block3", "pool"]

    def upto(self, x: torch.Tensor, k: int) -> List[torch.Tensor]:
        x = (x - self.mean) / self.std
        out: List[torch.Tensor] = []
        h = x
        for i, m in enumerate(self.body):
            h = m(h)
            if i == 2:
                out.append(_grid(h, 4))                       # 16 x 14 x 14 -> 256
                if k <= 0:
                    return out
            elif i == 4:
                out.append(_grid(h, 3))                       # 48 x 7 x 7 -> 432
                if k <= 1:
                    return out
            elif i == 5:
                out.append(_grid(h, 2))                       # 64 x 7 x 7 -> 256
                if k <= 2:
                    return out
        out.append(h)                                         # 64 = embed
        return out

    @torch.jit.export
    def embed_layers(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.upto(x, 99)


class LayeredAllConv(nets2.AllConv):
    # body: 0 conv 1 act 2 conv(s2) 3 act 4 conv 5 act 6 conv(s2) 7 act 8 conv1x1 9 act 10 GAP 11 flatten
    def __init__(self, num_classes, mean, std):
        super().__init__(num_classes, mean, std)
        self.layer_names = ["conv2", "conv4", "pool"]

    def upto(self, x: torch.Tensor, k: int) -> List[torch.Tensor]:
        x = (x - self.mean) / self.std
        out: List[torch.Tensor] = []
        h = x
        for i, m in enumerate(self.body):
            h = m(h)
            if i == 3:
                out.append(_grid(h, 4))                       # 32 x 14 x 14 -> 512
                if k <= 0:
                    return out
            elif i == 7:
                out.append(_grid(h, 2))                       # 64 x 7 x 7 -> 256
                if k <= 1:
                    return out
        out.append(h)                                         # 128 = embed
        return out

    @torch.jit.export
    def embed_layers(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.upto(x, 99)


LAYERED = {"mlp": LayeredMLP, "lenet": LayeredLeNet, "cnn": LayeredCNN, "resnet": LayeredResNet,
           "vgg": LayeredVGG, "wmlp": LayeredWideMLP, "mobile": LayeredMobileNet,
           "allconv": LayeredAllConv}


def build_layered(arch, num_classes):
    """Mean/std are placeholders here: load_state_dict overwrites the buffers."""
    return LAYERED[arch](num_classes, mean=0.5, std=0.5)


class LayerView(nn.Module):
    """Fine-tuning view of one layer: embed(x) = the network truncated at layer `index` (the
    tensor embed_layers(x)[index]), computing nothing deeper. bench/zoo/finetune.py puts its new
    Linear head on embed(x); only the parameters up to that layer receive gradients."""

    def __init__(self, layered: nn.Module, index: int):
        super().__init__()
        self.m = layered
        self.index = index

    @torch.jit.export
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.m.upto(x, self.index)[self.index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)
