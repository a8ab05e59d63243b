"""Recommend and the calls of learning from outcomes (report, records, train, alignments), as
methods that Client inherits (LearningCalls); client.py holds the connection."""
import hashlib
from typing import Callable, Dict, Iterable, Optional, Sequence, Union

import grpc
import numpy as np

from modeldock.datasets import _dataset_header
from modeldock.types import (LayerScore, ModelDockError, Recommendation, RecommendResult,
                             RecordList)
from modeldock.v1 import modeldock_pb2 as pb

_CHUNK = 1 << 20  # the server takes at most 1 MiB per stream message
_SOURCE_NAMES = {pb.OUTCOME_SOURCE_FINETUNE: "finetune", pb.OUTCOME_SOURCE_IMPORT: "import",
                 pb.OUTCOME_SOURCE_STAGE2: "stage2", pb.OUTCOME_SOURCE_TUNE: "tune"}
_METRICS = {name[len("METRIC_"):].lower(): value for name, value in pb.Metric.items()
            if name != "METRIC_UNSPECIFIED"}

# samples: images [N, C, H, W], tabular rows [N, F], audio clips [N, T] (numpy), or texts.
Samples = Union[np.ndarray, Sequence[str]]


def _streamed(stub_call, message_type, header, data: bytes, timeout: float, metadata):
    """A client-streaming call: the header, then the dataset's bytes in 1 MiB chunks."""
    def messages():
        yield message_type(header=header)
        for start in range(0, len(data), _CHUNK):
            yield message_type(chunk=data[start:start + _CHUNK])

    try:
        return stub_call(messages(), timeout=timeout, metadata=metadata)
    except grpc.RpcError as e:
        raise ModelDockError(e.code(), e.details()) from None


def _dataset(samples: Samples, labels, class_names: Iterable[str], audio: bool,
             max_samples: int):
    """The RecommendHeader and bytes of a dataset; audio=True marks [N, T] clips as audio."""
    if max_samples > 0:
        samples = samples[:max_samples]
        labels = None if labels is None else labels[:max_samples]
    header, data = _dataset_header(samples, labels, class_names)
    if audio:
        if header.encoding != pb.SAMPLE_ENCODING_FLOAT32 or len(header.sample_shape) != 1:
            raise ValueError("audio samples are float clips [N, T]")
        header.task = pb.TASK_KIND_AUDIO_CLASSIFICATION
    return header, data


def _version_dict(v) -> Dict[str, object]:
    """A trained ranker version (AlignmentVersion): every field, as the CLI's --json has it."""
    return {"version": v.version, "created_unix_ms": v.created_unix_ms, "serving": v.serving,
            "adopted": v.adopted, "num_queries": v.num_queries, "num_records": v.num_records,
            "folds": v.folds, "validation_untrained": v.validation_untrained,
            "validation_serving": v.validation_serving,
            "validation_trained": v.validation_trained, "weight": v.weight,
            "shrinkage": v.shrinkage, "sharpness": v.sharpness,
            "training_seconds": v.training_seconds, "reason": v.reason,
            "vectors_trained": v.vectors_trained,
            "vectors_validation_untrained": v.vectors_validation_untrained,
            "vectors_validation_trained": v.vectors_validation_trained,
            "vectors_reason": v.vectors_reason, "weak_queries": v.weak_queries,
            "weak_weight": v.weak_weight, "stage2_weight": v.stage2_weight,
            "prior_target": v.prior_target or "facts"}


def _job_dict(job) -> Dict[str, object]:
    """A training job: state ("idle", "running", "done", "failed"), message, times, and when
    done the version's fields flattened in (version, adopted, validation figures, ...)."""
    state = pb.TrainingState.Name(job.state)[len("TRAINING_STATE_"):].lower()
    out = {"state": state, "message": job.message, "started_unix_ms": job.started_unix_ms,
           "finished_unix_ms": job.finished_unix_ms}
    if state == "done":
        result = _version_dict(job.result)
        out.update({k: v for k, v in result.items() if k not in ("serving", "created_unix_ms")})
        out["created_unix_ms"] = result["created_unix_ms"]
    return out


class LearningCalls:
    """recommend, report, records, train, alignments, use_alignment (mixed into Client, which
    provides _stub, _timeout, _metadata and _unary)."""

    def recommend(self, samples: Samples, labels: Optional[Sequence[int]] = None, top: int = 5,
                  metric: Optional[str] = None, candidates: int = 0, brute_force: bool = False,
                  budget_ms: float = 0, class_names: Iterable[str] = (),
                  all_versions: bool = False, audio: bool = False,
                  max_samples: int = 0) -> RecommendResult:
        """Ranks the dock's models for a dataset.

        samples: numpy array [N, C, H, W] (images, values in [0, 1], or uint8 0..255) or [N, F]
        (tabular), or a list of N strings (texts, for text models); with audio=True, [N, T]
        clips of 16 kHz mono in [-1, 1] (for audio models). labels: N integers 0..C-1, or None
        (unlabelled: the server clusters). metric: fusion (default), tmi, logme, leep, nce,
        hscore, shrinkage_hscore, gbc, sfda, none. candidates: stage-1 candidates scored in
        stage 2 (0: as the latency budget allows); brute_force: score every compatible model;
        budget_ms: the latency budget of the call (0: the server's; stage 2 plans within what
        encoding and stage 1 leave of it). all_versions: list every version of a
        model name (default: its best-ranked one). max_samples: only the first N samples.
        """
        header, data = _dataset(samples, labels, class_names, audio, max_samples)
        header.top_k = top
        header.all_versions = all_versions
        header.num_candidates = candidates
        header.brute_force = brute_force
        header.latency_budget_ms = budget_ms
        if metric is not None:
            if metric not in _METRICS:
                raise ValueError(f"unknown metric '{metric}'; one of {sorted(_METRICS)}")
            header.metric = _METRICS[metric]
        r = _streamed(self._stub.Recommend, pb.RecommendRequest, header, data, self._timeout,
                      self._metadata)
        results = [Recommendation(
            rank=x.rank, name=x.model.spec.name, model_id=x.model.id, score=x.score,
            similarity=x.similarity,
            stage1_score=x.stage1_score if x.HasField("stage1_score") else None,
            stage2_score=x.stage2_score, scored=x.scored, reason=x.reason,
            prior=x.prior if x.HasField("prior") else None, layer=x.layer,
            layer_scores=[LayerScore(name=l.name, dim=l.dim, score=l.score)
                          for l in x.layer_scores],
            version=x.model.spec.version, stage1_rank=x.stage1_rank) for x in r.results]
        t = r.timings
        return RecommendResult(
            results=results, mode=pb.RecommendMode.Name(r.mode)[len("RECOMMEND_MODE_"):].lower(),
            mode_reason=r.mode_reason, num_scored=r.num_scored, num_compatible=r.num_compatible,
            label_source=r.label_source, warnings=list(r.warnings), total_millis=t.total_millis,
            alignment_version=r.alignment_version, recorded_outcomes=r.recorded_outcomes,
            metric=pb.Metric.Name(r.metric)[len("METRIC_"):].lower(), num_cached=r.num_cached,
            latency_budget_ms=r.latency_budget_ms, num_samples_scored=r.num_samples_scored,
            timings={"receive_millis": t.receive_millis,
                     "encode_query_millis": t.encode_query_millis,
                     "stage1_millis": t.stage1_millis, "stage2_millis": t.stage2_millis,
                     "total_millis": t.total_millis})

    # -- learning from outcomes ----------------------------------------------------------------

    def report(self, samples: Samples, labels: Sequence[int], outcomes: Dict[str, float],
               source: str = "finetune", class_names: Iterable[str] = (), audio: bool = False,
               max_samples: int = 0) -> Dict[str, object]:
        """Tells the dock how models fine-tuned on this dataset did.

        samples, labels, class_names, audio, max_samples: a dataset as recommend() takes it.
        outcomes: {model name or id: accuracy in [0, 1]}. source: "finetune" (you measured it)
        or "import" (bulk). The dock keeps class prototypes and its stage-1 view, not samples.
        Returns query_id, num_stored, num_classes, num_stage1_scores, total_records,
        total_queries.
        """
        if source not in ("finetune", "import"):
            raise ValueError("source must be 'finetune' or 'import'")
        dataset, data = _dataset(samples, labels, class_names, audio, max_samples)
        header = pb.ReportOutcomeHeader(
            dataset=dataset,
            outcomes=[pb.Outcome(model=m, accuracy=float(a)) for m, a in outcomes.items()],
            source=pb.OUTCOME_SOURCE_IMPORT if source == "import" else pb.OUTCOME_SOURCE_FINETUNE)
        r = _streamed(self._stub.ReportOutcome, pb.ReportOutcomeRequest, header, data,
                      self._timeout, self._metadata)
        return {"query_id": r.query_id, "num_stored": r.num_stored, "num_classes": r.num_classes,
                "num_stage1_scores": r.num_stage1_scores, "total_records": r.total_records,
                "total_queries": r.total_queries}

    def tune(self, samples: Samples, labels: Sequence[int], top: int = 2,
             budget_s: float = 120.0, seed: int = 0, max_epochs: int = 0, patience: int = 0,
             learning_rate: float = 0.0, out: Optional[str] = None,
             on_progress: Optional[Callable[[Dict[str, object]], None]] = None,
             class_names: Iterable[str] = (), max_samples: int = 0) -> Dict[str, object]:
        """Rank, then tune: the dock recommends, splits the labelled samples (seeded, stratified
        80/20), fine-tunes the top candidates (a new head on embed and every layer) one after
        another in its sandboxed workers, and keeps the best on the validation split. Each
        tuned candidate becomes an outcome record of source "tune".

        top: candidates tuned (1..10). budget_s: the whole tune's training budget, shared by
        the candidates. seed: the same seed gives the same tune. max_epochs, patience,
        learning_rate: 0 = the server's defaults (10, 3, 0.001). on_progress(dict) gets every
        epoch as it ends: candidate, model, epoch, train_loss, val_accuracy, millis.
        out: where to write the winner's tuned TorchScript file (its licence applies to it).
        Returns the CLI's tune --json document (candidates with their epochs, winner index or
        -1, winner_license, seed, train/val samples, schedule, query_id, recorded_outcomes,
        model_sha256, model_size_bytes) and "model": the file's bytes (b"" if all failed).
        """
        dataset, data = _dataset(samples, labels, class_names, False, max_samples)
        header = pb.TuneHeader(dataset=dataset, top_k=top, budget_seconds=budget_s, seed=seed,
                               max_epochs=max_epochs, patience=patience,
                               learning_rate=learning_rate)

        def messages():
            yield pb.TuneRequest(header=header)
            for start in range(0, len(data), _CHUNK):
                yield pb.TuneRequest(chunk=data[start:start + _CHUNK])

        result, model = None, bytearray()
        try:
            # The server needs the budget and then some per candidate (as the C++ client).
            timeout = self._timeout + 2 * budget_s + 30 * max(top, 1)
            for r in self._stub.Tune(messages(), timeout=timeout, metadata=self._metadata):
                kind = r.WhichOneof("payload")
                if kind == "progress" and on_progress is not None:
                    e = r.progress.epoch
                    on_progress({"candidate": r.progress.candidate,
                                 "model": r.progress.model_name, "epoch": e.epoch,
                                 "train_loss": e.train_loss, "val_accuracy": e.val_accuracy,
                                 "millis": e.millis})
                elif kind == "result":
                    result = r.result
                elif kind == "model_chunk":
                    model += r.model_chunk
        except grpc.RpcError as e:
            raise ModelDockError(e.code(), e.details()) from None
        if result is None:
            raise ModelDockError(grpc.StatusCode.INTERNAL, "the tune ended without a result")
        if len(model) != result.model_size_bytes or (
                model and hashlib.sha256(model).hexdigest() != result.model_sha256):
            raise ModelDockError(grpc.StatusCode.DATA_LOSS,
                                 "the tuned model arrived damaged (size or SHA-256 differs)")
        if out and model:
            with open(out, "wb") as f:
                f.write(model)
        candidates = [{"name": c.model.spec.name, "id": c.model.id,
                       "predicted_rank": c.predicted_rank, "score": c.score, "ok": c.ok,
                       "failure": c.failure, "best_epoch": c.best_epoch,
                       "best_accuracy": c.best_accuracy, "stop_reason": c.stop_reason,
                       "millis": c.millis,
                       "epochs": [{"epoch": e.epoch, "train_loss": e.train_loss,
                                   "val_accuracy": e.val_accuracy, "millis": e.millis}
                                  for e in c.epochs]} for c in result.candidates]
        return {"candidates": candidates, "winner": result.winner,
                "winner_license": result.winner_license, "seed": result.seed,
                "train_samples": result.train_samples, "val_samples": result.val_samples,
                "schedule": result.schedule, "query_id": result.query_id,
                "recorded_outcomes": result.recorded_outcomes,
                "model_sha256": result.model_sha256,
                "model_size_bytes": result.model_size_bytes, "model": bytes(model)}

    def records(self, model: str = "", limit: int = 100) -> RecordList:
        """Reported outcomes, newest first (of model, a name or id, if given): a list of dicts
        (id, query_id, model, model_id, accuracy, source: finetune, import, stage2 or tune,
        created_unix_ms), with total_records and total_queries as attributes: the totals of
        the records asked for (of model, if given) beyond the limit."""
        r = self._unary(self._stub.ListRecords, pb.ListRecordsRequest(model=model, limit=limit))
        return RecordList([{"id": x.id, "query_id": x.query_id, "model": x.model_name,
                            "model_id": x.model_id, "accuracy": x.accuracy,
                            "source": _SOURCE_NAMES.get(x.source, "finetune"),
                            "created_unix_ms": x.created_unix_ms} for x in r.records],
                          total_records=r.total_records, total_queries=r.total_queries)

    def train(self, wait: bool = True) -> Dict[str, object]:
        """Trains a new ranker version from the records (admin). With wait, returns the job with
        its version's figures (state "done": version, adopted, num_queries, num_records, folds,
        validation_untrained/serving/trained, weight, stage2_weight, shrinkage, sharpness,
        prior_target, reason, vectors_*, weak_*); it serves only if it beat the serving version
        on held-out queries. Without wait, state "running": see alignments()["last_training"]."""
        return _job_dict(self._unary(self._stub.TrainAlignment,
                                     pb.TrainAlignmentRequest(wait=wait)).job)

    def alignments(self) -> Dict[str, object]:
        """Trained versions (every field of each; "serving" marks the serving one), the serving
        version (0 = untrained) and the last training job (as train() returns it)."""
        r = self._unary(self._stub.ListAlignments, pb.ListAlignmentsRequest())
        return {"serving_version": r.serving_version,
                "versions": [_version_dict(v) for v in r.versions],
                "last_training": _job_dict(r.last_training)}

    def use_alignment(self, version: int) -> int:
        """Serves `version` from the next recommendation on (admin; 0 = untrained); returns the
        serving version."""
        return self._unary(self._stub.UseAlignment,
                           pb.UseAlignmentRequest(version=version)).serving_version
