"""Client: one connection to a modeldock server and a method per call of modeldock.v1."""
import hashlib
from typing import Dict, Iterable, List, Optional, Sequence

import grpc

from modeldock.datasets import _dataset_header
from modeldock.types import (LayerScore, Model, ModelDockError, Recommendation,
                             RecommendResult)
from modeldock.v1 import modeldock_pb2 as pb
from modeldock.v1 import modeldock_pb2_grpc as pb_grpc

_CHUNK = 1 << 20  # the server takes at most 1 MiB per stream message
_SOURCE_NAMES = {pb.OUTCOME_SOURCE_FINETUNE: "finetune", pb.OUTCOME_SOURCE_IMPORT: "import",
                 pb.OUTCOME_SOURCE_STAGE2: "stage2"}
_METRICS = {name[len("METRIC_"):].lower(): value for name, value in pb.Metric.items()
            if name != "METRIC_UNSPECIFIED"}


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as e:  # raised by the stub; carries code() and details()
        raise ModelDockError(e.code(), e.details()) from None


class Client:
    """A connection to a modeldock server.

    address: "host:port". api_key: sent as "authorization: Bearer KEY" (for servers that check
    keys). tls_ca: a PEM file of the CA that signed the server's certificate (TLS); None =
    plaintext. tls_cert/tls_key: the client's certificate chain and key PEM files (mutual TLS).
    timeout: seconds per call.
    """

    def __init__(self, address: str, api_key: Optional[str] = None,
                 tls_ca: Optional[str] = None, timeout: float = 120.0,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None):
        def read(path):
            if not path:
                return None
            with open(path, "rb") as f:
                return f.read()

        if tls_ca or tls_cert:
            credentials = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key), read(tls_cert))
            self._channel = grpc.secure_channel(address, credentials)
        else:
            self._channel = grpc.insecure_channel(address)
        self._stub = pb_grpc.ModelDockServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._timeout = timeout

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- models --------------------------------------------------------------------------------

    def register(self, path: str, name: str, input_shape: Sequence[int] = (),
                 labels: Sequence[str] = (), description: str = "", license: str = "",
                 tags: Sequence[str] = (), version: str = "", tabular: bool = False,
                 wait: bool = True, feature_extractor: bool = False,
                 text: bool = False, audio: bool = False) -> Model:
        """Uploads a TorchScript file. With wait (the default), returns once the model is READY
        or FAILED (a FAILED model raises ModelDockError with FAILED_PRECONDITION).
        feature_extractor: a headless model whose forward returns features [N, D]; no labels.
        text: a text model, forward(texts: List[str]) -> [N, K], with no input_shape.
        audio: an audio model, forward(x [N, T]) on 16 kHz mono clips; input_shape [T]."""
        with open(path, "rb") as f:
            data = f.read()
        spec = pb.ModelSpec(name=name, version=version, description=description,
                            input_shape=list(input_shape), class_labels=list(labels),
                            license=license, tags=list(tags),
                            task=pb.TASK_KIND_TEXT_CLASSIFICATION if text
                            else pb.TASK_KIND_AUDIO_CLASSIFICATION if audio
                            else pb.TASK_KIND_TABULAR_CLASSIFICATION if tabular
                            else pb.TASK_KIND_IMAGE_CLASSIFICATION,
                            kind=pb.MODEL_KIND_FEATURE_EXTRACTOR if feature_extractor
                            else pb.MODEL_KIND_CLASSIFIER)
        header = pb.RegisterModelHeader(spec=spec, size_bytes=len(data),
                                        sha256=hashlib.sha256(data).hexdigest())

        def messages():
            yield pb.RegisterModelRequest(header=header)
            for start in range(0, len(data), _CHUNK):
                yield pb.RegisterModelRequest(chunk=data[start:start + _CHUNK])

        response = _call(self._stub.RegisterModel, messages(), timeout=self._timeout,
                         metadata=self._metadata)
        return self._admitted(response.model, wait)

    def register_remote(self, endpoint: str, remote_model: str, name: str,
                        input_shape: Sequence[int], labels: Sequence[str] = (),
                        remote_version: str = "", description: str = "", license: str = "",
                        tags: Sequence[str] = (), version: str = "", wait: bool = True,
                        feature_extractor: bool = False) -> Model:
        """Registers a model that stays on a KServe v2 inference server (Triton, KServe,
        MLServer, another dock's --kserve-listen) at endpoint "host:port"; the dock calls it
        over the protocol. Waits like register()."""
        spec = pb.ModelSpec(name=name, version=version, description=description,
                            input_shape=list(input_shape), class_labels=list(labels),
                            license=license, tags=list(tags),
                            task=pb.TASK_KIND_IMAGE_CLASSIFICATION if len(input_shape) == 3
                            else pb.TASK_KIND_TABULAR_CLASSIFICATION,
                            kind=pb.MODEL_KIND_FEATURE_EXTRACTOR if feature_extractor
                            else pb.MODEL_KIND_CLASSIFIER,
                            remote=pb.RemoteTarget(endpoint=endpoint, model=remote_model,
                                                   version=remote_version))
        response = _call(self._stub.RegisterRemoteModel, pb.RegisterRemoteModelRequest(spec=spec),
                         timeout=self._timeout, metadata=self._metadata)
        return self._admitted(response.model, wait)

    def _admitted(self, proto_model, wait: bool) -> Model:
        """A registration's answer; with wait, the model once READY (FAILED raises)."""
        model = Model._from_proto(proto_model)
        if not wait:
            return model
        model = self.wait(model.id)
        if model.state == "FAILED":
            raise ModelDockError(grpc.StatusCode.FAILED_PRECONDITION,
                                 f"model '{model.name}' failed: {model.state_reason}")
        return model

    def wait(self, model: str) -> Model:
        """Follows a model's state changes until READY or FAILED; returns the last state."""
        last = None
        stream = self._stub.WatchModel(pb.WatchModelRequest(model=model), timeout=self._timeout,
                                       metadata=self._metadata)
        try:
            for message in stream:
                last = Model._from_proto(message.model)
        except grpc.RpcError as e:
            raise ModelDockError(e.code(), e.details()) from None
        return last

    def get(self, model: str) -> Model:
        """By name or id."""
        response = _call(self._stub.GetModel, pb.GetModelRequest(model=model),
                         timeout=self._timeout, metadata=self._metadata)
        return Model._from_proto(response.model)

    def list(self, name_contains: str = "", tag: str = "") -> List[Model]:
        """Every registered model (all pages)."""
        models, token = [], ""
        while True:
            response = _call(self._stub.ListModels,
                             pb.ListModelsRequest(name_contains=name_contains, tag=tag,
                                                  page_size=1000, page_token=token),
                             timeout=self._timeout, metadata=self._metadata)
            models += [Model._from_proto(m) for m in response.models]
            token = response.next_page_token
            if not token:
                return models

    def delete(self, model: str, all_versions: bool = False) -> str:
        """Deletes one version (id, "name@version", or a name with one version), or with
        all_versions every version of a name; returns the (first) deleted id."""
        return _call(self._stub.DeleteModel,
                     pb.DeleteModelRequest(model=model, all_versions=all_versions),
                     timeout=self._timeout, metadata=self._metadata).id

    def create_key(self, role: str, name: str = "") -> Dict:
        """Admin: a new API key ("consumer", "provider" or "admin"). The secret is returned
        only here: {"id", "name", "role", "secret"}."""
        roles = {"consumer": pb.API_KEY_ROLE_CONSUMER, "provider": pb.API_KEY_ROLE_PROVIDER,
                 "admin": pb.API_KEY_ROLE_ADMIN}
        if role not in roles:
            raise ValueError(f"role must be one of {sorted(roles)}; got {role!r}")
        r = _call(self._stub.CreateApiKey, pb.CreateApiKeyRequest(role=roles[role], name=name),
                  timeout=self._timeout, metadata=self._metadata)
        return {"id": r.key.id, "name": r.key.name, "role": role, "secret": r.secret}

    def list_keys(self) -> List[Dict]:
        """Admin: every key (never the secrets)."""
        r = _call(self._stub.ListApiKeys, pb.ListApiKeysRequest(), timeout=self._timeout,
                  metadata=self._metadata)
        return [{"id": k.id, "name": k.name,
                 "role": pb.ApiKeyRole.Name(k.role)[len("API_KEY_ROLE_"):].lower(),
                 "created_unix_ms": k.created_unix_ms, "revoked": k.revoked} for k in r.keys]

    def revoke_key(self, key_id: str) -> None:
        """Admin: revokes a key; it stops working on the next call."""
        _call(self._stub.RevokeApiKey, pb.RevokeApiKeyRequest(id=key_id), timeout=self._timeout,
              metadata=self._metadata)

    def update(self, model: str, description: Optional[str] = None, license: Optional[str] = None,
               tags: Optional[Sequence[str]] = None) -> Model:
        """Edits metadata without a new upload; None leaves a field as it is; tags replace all."""
        request = pb.UpdateModelRequest(model=model)
        if description is not None:
            request.description = description
        if license is not None:
            request.license = license
        if tags is not None:
            request.replace_tags = True
            request.tags.extend(tags)
        r = _call(self._stub.UpdateModel, request, timeout=self._timeout, metadata=self._metadata)
        return Model._from_proto(r.model)

    def audit(self, limit: int = 100) -> List[Dict[str, object]]:
        """Admin: who registered, updated, deleted what and when (newest first)."""
        r = _call(self._stub.ListAuditLog, pb.ListAuditLogRequest(limit=limit),
                  timeout=self._timeout, metadata=self._metadata)
        return [{"time_ms": e.unix_ms, "actor": e.actor, "action": e.action, "target": e.target,
                 "detail": e.detail} for e in r.entries]

    # -- recommend -----------------------------------------------------------------------------

    def recommend(self, samples, labels=None, top: int = 5, metric: Optional[str] = None,
                  candidates: int = 0, brute_force: bool = False, budget_ms: float = 0,
                  class_names: Iterable[str] = (), all_versions: bool = False,
                  audio: bool = False) -> RecommendResult:
        """Ranks the dock's models for a dataset.

        samples: numpy array [N, C, H, W] (images, values in [0, 1], or uint8 0..255) or [N, F]
        (tabular), or a list of N strings (texts, for text models); with audio=True, [N, T]
        clips of 16 kHz mono in [-1, 1] (for audio models). labels: N integers 0..C-1, or None (unlabelled: the server clusters).
        metric: fusion (default), tmi, logme, leep, nce, hscore, shrinkage_hscore, gbc, sfda,
        none. all_versions: list every version of a model name (default: its best-ranked one).
        """
        header, data = _dataset_header(samples, labels, class_names)
        if audio:
            if header.encoding != pb.SAMPLE_ENCODING_FLOAT32 or len(header.sample_shape) != 1:
                raise ValueError("audio samples are float clips [N, T]")
            header.task = pb.TASK_KIND_AUDIO_CLASSIFICATION
        header.top_k = top
        header.all_versions = all_versions
        header.num_candidates = candidates
        header.brute_force = brute_force
        header.latency_budget_ms = budget_ms
        if metric is not None:
            if metric not in _METRICS:
                raise ValueError(f"unknown metric '{metric}'; one of {sorted(_METRICS)}")
            header.metric = _METRICS[metric]

        def messages():
            yield pb.RecommendRequest(header=header)
            for start in range(0, len(data), _CHUNK):
                yield pb.RecommendRequest(chunk=data[start:start + _CHUNK])

        r = _call(self._stub.Recommend, messages(), timeout=self._timeout,
                  metadata=self._metadata)
        results = [Recommendation(
            rank=x.rank, name=x.model.spec.name, model_id=x.model.id, score=x.score,
            similarity=x.similarity,
            stage1_score=x.stage1_score if x.HasField("stage1_score") else None,
            stage2_score=x.stage2_score, scored=x.scored, reason=x.reason,
            prior=x.prior if x.HasField("prior") else None, layer=x.layer,
            layer_scores=[LayerScore(name=l.name, dim=l.dim, score=l.score)
                          for l in x.layer_scores]) for x in r.results]
        mode = pb.RecommendMode.Name(r.mode)[len("RECOMMEND_MODE_"):].lower()
        return RecommendResult(results=results, mode=mode, mode_reason=r.mode_reason,
                               num_scored=r.num_scored, num_compatible=r.num_compatible,
                               label_source=r.label_source, warnings=list(r.warnings),
                               total_millis=r.timings.total_millis,
                               alignment_version=r.alignment_version,
                               recorded_outcomes=r.recorded_outcomes)

    # -- learning from outcomes ----------------------------------------------------------------

    def report(self, samples, labels, outcomes: Dict[str, float],
               source: str = "finetune") -> Dict[str, object]:
        """Tells the dock how models fine-tuned on this dataset did.

        outcomes: {model name or id: accuracy in [0, 1]}. source: "finetune" (you measured it)
        or "import" (bulk). The dock keeps class prototypes and its stage-1 view, not samples.
        Returns query_id, num_stored, total_records, total_queries.
        """
        if source not in ("finetune", "import"):
            raise ValueError("source must be 'finetune' or 'import'")
        dataset, data = _dataset_header(samples, labels, ())
        header = pb.ReportOutcomeHeader(
            dataset=dataset,
            outcomes=[pb.Outcome(model=m, accuracy=float(a)) for m, a in outcomes.items()],
            source=pb.OUTCOME_SOURCE_IMPORT if source == "import" else pb.OUTCOME_SOURCE_FINETUNE)

        def messages():
            yield pb.ReportOutcomeRequest(header=header)
            for start in range(0, len(data), _CHUNK):
                yield pb.ReportOutcomeRequest(chunk=data[start:start + _CHUNK])

        r = _call(self._stub.ReportOutcome, messages(), timeout=self._timeout,
                  metadata=self._metadata)
        return {"query_id": r.query_id, "num_stored": r.num_stored,
                "total_records": r.total_records, "total_queries": r.total_queries}

    def records(self, model: str = "", limit: int = 100) -> List[Dict[str, object]]:
        """Reported outcomes, newest first."""
        r = _call(self._stub.ListRecords, pb.ListRecordsRequest(model=model, limit=limit),
                  timeout=self._timeout, metadata=self._metadata)
        return [{"id": x.id, "query_id": x.query_id, "model": x.model_name,
                 "model_id": x.model_id, "accuracy": x.accuracy,
                 "source": _SOURCE_NAMES.get(x.source, "finetune")}
                for x in r.records]

    def train(self, wait: bool = True) -> Dict[str, object]:
        """Trains a new ranker version from the records (admin). With wait, returns its
        validation figures; it serves only if it beat the serving version on held-out queries."""
        r = _call(self._stub.TrainAlignment, pb.TrainAlignmentRequest(wait=wait),
                  timeout=self._timeout, metadata=self._metadata)
        job = r.job
        state = pb.TrainingState.Name(job.state)[len("TRAINING_STATE_"):].lower()
        out = {"state": state, "message": job.message}
        if state == "done":
            out.update(version=job.result.version, adopted=job.result.adopted,
                       validation_untrained=job.result.validation_untrained,
                       validation_serving=job.result.validation_serving,
                       validation_trained=job.result.validation_trained,
                       weight=job.result.weight, stage2_weight=job.result.stage2_weight,
                       weak_queries=job.result.weak_queries, weak_weight=job.result.weak_weight,
                       prior_target=job.result.prior_target, reason=job.result.reason)
        return out

    def alignments(self) -> Dict[str, object]:
        """Trained versions and which one serves (0 = untrained)."""
        r = _call(self._stub.ListAlignments, pb.ListAlignmentsRequest(), timeout=self._timeout,
                  metadata=self._metadata)
        return {"serving_version": r.serving_version,
                "versions": [{"version": v.version, "adopted": v.adopted, "serving": v.serving,
                              "num_queries": v.num_queries,
                              "validation_trained": v.validation_trained,
                              "validation_serving": v.validation_serving,
                              "prior_target": v.prior_target or "facts"}
                             for v in r.versions]}

    def use_alignment(self, version: int) -> None:
        """Serves `version` from the next recommendation on (admin; 0 = untrained)."""
        _call(self._stub.UseAlignment, pb.UseAlignmentRequest(version=version),
              timeout=self._timeout, metadata=self._metadata)
