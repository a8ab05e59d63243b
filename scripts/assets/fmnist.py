"""Fashion-MNIST from the Debian package dataset-fashion-mnist, and MNIST-format (IDX) writers."""
import gzip
import os
import struct

import numpy as np

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split, root=FMNIST_DIR):
    """split is "train" or "t10k". Returns (uint8 [N, 28, 28], uint8 [N])."""
    images = _read_idx(os.path.join(root, f"{split}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(root, f"{split}-labels-idx1-ubyte.gz"))
    if len(images) != len(labels):
        raise ValueError(f"fashion-mnist {split}: {len(images)} images but {len(labels)} labels")
    return images, labels


def write_idx(path, array):
    """Writes an uncompressed unsigned-byte IDX file (MNIST format), any rank."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())
