"""Datasets as the server takes them: a RecommendHeader (shape, labels, encoding) and the bytes."""
import struct

import numpy as np

from modeldock.v1 import modeldock_pb2 as pb


def _text_header(texts, labels, class_names):
    """A text dataset: each text as a little-endian u32 byte length and its UTF-8 bytes."""
    encoded = [t.encode("utf-8") for t in texts]
    data = b"".join(struct.pack("<I", len(b)) + b for b in encoded)
    header = pb.RecommendHeader(num_samples=len(encoded), encoding=pb.SAMPLE_ENCODING_UTF8_TEXT,
                                task=pb.TASK_KIND_TEXT_CLASSIFICATION, text_bytes=len(data),
                                class_names=list(class_names))
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(encoded):
            raise ValueError(f"labels must be one per text ({len(encoded)}), got {len(labels)}")
        header.labels.extend(int(v) for v in labels)
    return header, data


def _dataset_header(samples, labels, class_names):
    """A RecommendHeader describing the dataset (shape, labels, encoding) and its bytes."""
    if isinstance(samples, (list, tuple)) and samples and all(isinstance(t, str) for t in samples):
        return _text_header(samples, labels, class_names)
    samples = np.asarray(samples)
    if samples.ndim not in (2, 4):
        raise ValueError(f"samples must be [N, C, H, W] or [N, F], got shape {samples.shape}")
    if samples.dtype == np.uint8 and samples.ndim == 4:
        encoding, data = pb.SAMPLE_ENCODING_UINT8, samples.tobytes()
    else:
        encoding = pb.SAMPLE_ENCODING_FLOAT32
        data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    header = pb.RecommendHeader(
        sample_shape=list(samples.shape[1:]), num_samples=samples.shape[0], encoding=encoding,
        class_names=list(class_names),
        task=pb.TASK_KIND_IMAGE_CLASSIFICATION if samples.ndim == 4
        else pb.TASK_KIND_TABULAR_CLASSIFICATION)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (samples.shape[0],):
            raise ValueError(f"labels must be [N] = [{samples.shape[0]}], got {labels.shape}")
        header.labels.extend(int(v) for v in labels)
    return header, data
