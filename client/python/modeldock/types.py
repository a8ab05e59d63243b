"""The values the client returns: models, recommendations, and the error it raises."""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import grpc

from modeldock.v1 import modeldock_pb2 as pb

_STATES = {pb.MODEL_STATE_PENDING: "PENDING", pb.MODEL_STATE_PROBING: "PROBING",
           pb.MODEL_STATE_READY: "READY", pb.MODEL_STATE_FAILED: "FAILED"}


class ModelDockError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class Model:
    id: str
    name: str
    state: str
    state_reason: str
    input_shape: List[int]
    class_labels: List[str]
    description: str = ""
    version: str = ""
    license: str = ""
    tags: List[str] = field(default_factory=list)
    sha256: str = ""
    size_bytes: int = 0
    has_embed: bool = False
    feature_dim: int = 0
    kind: str = "classifier"  # or "feature_extractor"
    # embed_layers(x): (name, width) per exported layer, in the model's order; empty without.
    layers: List[Tuple[str, int]] = field(default_factory=list)
    # A remote model: "host:port", its name and version there; None for a stored file.
    remote: Optional[Tuple[str, str, str]] = None

    @staticmethod
    def _from_proto(m) -> "Model":
        return Model(id=m.id, name=m.spec.name, state=_STATES.get(m.state, "UNSPECIFIED"),
                     state_reason=m.state_reason, input_shape=list(m.spec.input_shape),
                     class_labels=list(m.spec.class_labels), description=m.spec.description,
                     version=m.spec.version,
                     license=m.spec.license, tags=list(m.spec.tags), sha256=m.sha256,
                     size_bytes=m.size_bytes, has_embed=m.has_embed, feature_dim=m.feature_dim,
                     kind="feature_extractor" if m.spec.kind == pb.MODEL_KIND_FEATURE_EXTRACTOR
                     else "classifier",
                     layers=[(layer.name, layer.dim) for layer in m.layers],
                     remote=(m.spec.remote.endpoint, m.spec.remote.model, m.spec.remote.version)
                     if m.spec.remote.endpoint else None)


@dataclass
class LayerScore:
    name: str
    dim: int
    score: float  # on the scale of Recommendation.stage2_score


@dataclass
class Recommendation:
    rank: int
    name: str
    model_id: str
    score: float
    similarity: float
    stage1_score: Optional[float]
    stage2_score: float
    scored: bool
    reason: str
    prior: Optional[float] = None  # outcome prior of the serving trained version
    # Models that export embed_layers(x): the layer the score comes from, and every layer's score.
    layer: str = ""
    layer_scores: List[LayerScore] = field(default_factory=list)


@dataclass
class RecommendResult:
    """The ranked models (iterable, indexable) plus how the answer was computed."""
    results: List[Recommendation]
    mode: str
    mode_reason: str
    num_scored: int
    num_compatible: int
    label_source: str
    warnings: List[str]
    total_millis: float
    alignment_version: int = 0  # the trained ranker version that ranked it (0 = untrained)
    recorded_outcomes: int = 0  # weak outcome records the dock kept (--learn-from-recommendations)

    def __iter__(self):
        return iter(self.results)

    def __len__(self):
        return len(self.results)

    def __getitem__(self, i):
        return self.results[i]


