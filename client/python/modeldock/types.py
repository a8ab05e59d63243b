"""The values the client returns: models, recommendations, scrub reports, and the error it
raises."""
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import grpc

from modeldock.v1 import modeldock_pb2 as pb

_STATES = {pb.MODEL_STATE_PENDING: "PENDING", pb.MODEL_STATE_PROBING: "PROBING",
           pb.MODEL_STATE_READY: "READY", pb.MODEL_STATE_FAILED: "FAILED"}
_TASKS = {pb.TASK_KIND_IMAGE_CLASSIFICATION: "image",
          pb.TASK_KIND_TABULAR_CLASSIFICATION: "tabular",
          pb.TASK_KIND_TEXT_CLASSIFICATION: "text", pb.TASK_KIND_AUDIO_CLASSIFICATION: "audio"}


class ModelDockError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class Model:
    """A registered model version, as GetModel/ListModels/WatchModel describe it."""
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
    # A remote model: "host:port" or an http[s]:// URL, its name and version there; None for a
    # stored file.
    remote: Optional[Tuple[str, str, str]] = None
    task: str = ""  # "image", "tabular", "text" or "audio" ("" when the server left it unset)
    created_unix_ms: int = 0
    probe_millis: int = 0  # how long probing took
    owner_key_id: str = ""  # the API key that registered it (servers with --auth)

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
                     if m.spec.remote.endpoint else None, task=_TASKS.get(m.spec.task, ""),
                     created_unix_ms=m.created_unix_ms, probe_millis=m.probe_millis,
                     owner_key_id=m.owner_key_id)


@dataclass
class LayerScore:
    """One exported layer's score for a model (models with embed_layers)."""
    name: str
    dim: int
    score: float  # on the scale of Recommendation.stage2_score


@dataclass
class Recommendation:
    """One ranked model of a RecommendResult: its scores and the reason in words."""
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
    version: str = ""  # the model's version label
    stage1_rank: int = 0  # its rank in stage 1 (knowledge-vector similarity), from 1


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
    metric: str = ""  # the stage-2 metric used: "fusion", "logme", ... ("none": stage 1 only)
    num_cached: int = 0  # stage-2 scores answered from the server's cache
    latency_budget_ms: float = 0.0  # the budget that decided the mode
    # query samples stage 2 ran the models on (fewer than sent when the budget took a part)
    num_samples_scored: int = 0
    # receive_millis, encode_query_millis, stage1_millis, stage2_millis, total_millis.
    timings: Dict[str, float] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Recommendation]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> Recommendation:
        return self.results[i]


@dataclass
class ModelPage:
    """One page of ListModels: the models, the token of the next page ("" = last page) and how
    many models match the filters in all."""
    models: List[Model]
    next_page_token: str
    total_size: int


class RecordList(list):
    """Outcome records (dicts, newest first), plus the dock's totals over all records."""

    def __init__(self, records: List[Dict[str, object]], total_records: int,
                 total_queries: int):
        super().__init__(records)
        self.total_records = total_records
        self.total_queries = total_queries


@dataclass
class ScrubReport:
    """One integrity scrub (Scrub): every stored model file re-hashed, probe features checked.

    state: "idle", "running", "done" or "failed". A bad file is restored from the server's
    --blob-mirror directories (blobs_restored) or its models are marked FAILED (models_failed,
    bad_model_ids); bad_blobs are the bad files' SHA-256 digests."""
    state: str
    message: str
    started_unix_ms: int = 0
    finished_unix_ms: int = 0
    blobs_checked: int = 0
    blobs_ok: int = 0
    blobs_bad: int = 0
    blobs_restored: int = 0
    bytes_hashed: int = 0
    models_failed: int = 0
    models_requeued: int = 0
    features_checked: int = 0
    features_bad: int = 0
    bad_model_ids: List[str] = field(default_factory=list)
    bad_blobs: List[str] = field(default_factory=list)

    @staticmethod
    def _from_proto(r) -> "ScrubReport":
        state = pb.ScrubState.Name(r.state)[len("SCRUB_STATE_"):].lower()
        return ScrubReport(
            state=state, message=r.message, started_unix_ms=r.started_unix_ms,
            finished_unix_ms=r.finished_unix_ms, blobs_checked=r.blobs_checked,
            blobs_ok=r.blobs_ok, blobs_bad=r.blobs_bad, blobs_restored=r.blobs_restored,
            bytes_hashed=r.bytes_hashed, models_failed=r.models_failed,
            models_requeued=r.models_requeued, features_checked=r.features_checked,
            features_bad=r.features_bad, bad_model_ids=list(r.bad_model_ids),
            bad_blobs=list(r.bad_blobs))

    @property
    def ok(self) -> bool:
        """No bad file or feature row found and the scrub did not fail (`modeldock admin scrub
        --wait` exits 1 otherwise)."""
        return self.state != "failed" and self.blobs_bad == 0 and self.features_bad == 0


