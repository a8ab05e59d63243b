#!/usr/bin/python3
"""Cuts the head off a TorchScript classifier: writes a feature extractor whose forward(x) is the
classifier's embed(x), to register with `modeldock register ... --feature-extractor`.

    /usr/bin/python3 scripts/headless_model.py CLASSIFIER.pt OUT.pt

The classifier must export embed(x) (the model contract's optional penultimate features).
"""
import sys

import torch


class Headless(torch.nn.Module):
    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.embed(x)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    classifier = torch.jit.load(sys.argv[1])
    if not hasattr(classifier, "embed"):
        sys.exit(f"{sys.argv[1]} exports no embed(x): nothing to keep once the head is cut off")
    torch.jit.script(Headless(classifier).eval()).save(sys.argv[2])


if __name__ == "__main__":
    main()
