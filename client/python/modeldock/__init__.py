"""modeldock: a Python client for the modeldock model-zoo retrieval server (gRPC modeldock.v1).

    import numpy as np
    import modeldock

    dock = modeldock.Client("127.0.0.1:50051")
    dock.register("tops.pt", name="tops-cnn", input_shape=(1, 28, 28),
                  labels=["t-shirt", "pullover", "dress", "coat", "shirt"])
    for r in dock.recommend(images, labels=y, top=5):   # images: [N, C, H, W] in [0, 1]
        print(r.rank, r.name, r.score, r.reason)

Needs grpcio, protobuf and numpy (Debian: python3-grpcio, python3-protobuf, python3-numpy). The
gRPC stubs (modeldock.v1) are generated from proto/ at build time, into <build>/python and into
the wheel <build>/dist/modeldock-VERSION-py3-none-any.whl. `python3 -m modeldock --help` (the
`modeldock-py` command of the wheel) is the client from the command line.
Errors are raised as modeldock.ModelDockError carrying the gRPC status code.
"""
from modeldock._version import __version__
from modeldock.client import Client
from modeldock.datasets import _dataset_header, _text_header  # noqa: F401 (tests build requests)
from modeldock.types import (LayerScore, Model, ModelDockError, ModelPage, Recommendation,
                             RecommendResult, RecordList, ScrubReport)
from modeldock.v1 import modeldock_pb2 as pb  # noqa: F401 (the messages, for raw stub calls)
from modeldock.v1 import modeldock_pb2_grpc as pb_grpc  # noqa: F401

__all__ = ["Client", "Model", "ModelPage", "LayerScore", "Recommendation", "RecommendResult",
           "RecordList", "ScrubReport", "ModelDockError", "__version__"]
