#!/usr/bin/python3
"""Register the demo models and ask which suits a Fashion-MNIST 'tops' query, from Python.

    PYTHONPATH=build/python /usr/bin/python3 docs/python_example.py ADDRESS ASSET_DIR
"""
import json
import os
import struct
import sys

import numpy as np

import modeldock


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    dims = struct.unpack(">" + "I" * data[3], data[4:4 + 4 * data[3]])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(dims)


address, assets = sys.argv[1], sys.argv[2]
demo = os.path.join(assets, "demo")
with modeldock.Client(address) as dock:
    registered = {m.name for m in dock.list()}
    for stem in ("fmnist-tops-cnn", "fmnist-footwear-cnn", "fmnist-all-mlp"):
        with open(os.path.join(demo, stem + ".json")) as f:
            meta = json.load(f)
        if meta["name"] not in registered:
            model = dock.register(os.path.join(demo, stem + ".pt"), name=meta["name"],
                                  input_shape=meta["input_shape"], labels=meta["class_labels"])
            print(f"registered {model.name}: {model.state}")
    query = os.path.join(demo, "query_tops")
    images = read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None]  # [N, 1, 28, 28]
    labels = read_idx(os.path.join(query, "query-labels-idx1-ubyte"))
    result = dock.recommend(images, labels=labels, top=3)
    print(f"mode {result.mode}: {result.mode_reason}")
    for r in result:
        print(f"{r.rank}. {r.name:24s} score {r.score:.3f}  {r.reason}")
