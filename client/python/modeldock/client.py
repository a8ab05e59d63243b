"""Client: one connection to a modeldock server, a method per call of modeldock.v1 (the model,
key, audit, health and scrub calls here; recommend and the learning calls in learning.py)."""
import hashlib
import json
import os
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from modeldock.learning import LearningCalls
from modeldock.types import Model, ModelDockError, ModelPage, ScrubReport
from modeldock.v1 import modeldock_pb2 as pb
from modeldock.v1 import modeldock_pb2_grpc as pb_grpc

_CHUNK = 1 << 20  # the server takes at most 1 MiB per stream message
_TASK_KINDS = {"image": pb.TASK_KIND_IMAGE_CLASSIFICATION,
               "tabular": pb.TASK_KIND_TABULAR_CLASSIFICATION,
               "text": pb.TASK_KIND_TEXT_CLASSIFICATION, "audio": pb.TASK_KIND_AUDIO_CLASSIFICATION}
_STATE_FILTERS = {"ready": pb.MODEL_STATE_READY, "probing": pb.MODEL_STATE_PROBING,
                  "pending": pb.MODEL_STATE_PENDING, "failed": pb.MODEL_STATE_FAILED}
_HEALTH = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_ROLES = {"consumer": pb.API_KEY_ROLE_CONSUMER, "provider": pb.API_KEY_ROLE_PROVIDER,
          "admin": pb.API_KEY_ROLE_ADMIN}

Metadata = Union[str, os.PathLike, Mapping[str, object]]


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as e:  # raised by the stub; carries code() and details()
        raise ModelDockError(e.code(), e.details()) from None


def _task_kind(task: str) -> int:
    """"image", "tabular", "text", "audio" (or "<kind>_classification", as sidecars say)."""
    kind = _TASK_KINDS.get(task[:-len("_classification")] if task.endswith("_classification")
                           else task)
    if kind is None:
        raise ValueError(f"task must be one of {sorted(_TASK_KINDS)}; got {task!r}")
    return kind


def _load_metadata(metadata: Optional[Metadata]) -> Dict[str, object]:
    """A metadata sidecar (a JSON file's path, or its dict), as `modeldock register --metadata`
    reads it: name, version, description, task, input_shape, class_labels, license, tags, kind."""
    if metadata is None:
        return {}
    if isinstance(metadata, Mapping):
        return dict(metadata)
    with open(metadata, encoding="utf-8") as f:
        meta = json.load(f)
    if not isinstance(meta, dict):
        raise ValueError(f"{os.fspath(metadata)}: metadata must be a JSON object")
    return meta


def _spec(metadata: Optional[Metadata], name: Optional[str], input_shape: Sequence[int],
          labels: Sequence[str], description: str, license: str, tags: Sequence[str],
          version: str, task: Optional[str], feature_extractor: bool) -> "pb.ModelSpec":
    """A ModelSpec from the sidecar, each non-empty argument overriding it (the CLI's rule)."""
    meta = _load_metadata(metadata)
    unknown = set(meta) - {"name", "version", "description", "task", "input_shape",
                           "class_labels", "license", "tags", "kind"}
    if unknown:
        raise ValueError(f"unknown metadata keys {sorted(unknown)}")
    kind = meta.get("kind", "classifier")
    if kind not in ("classifier", "feature_extractor"):
        raise ValueError('kind must be "classifier" or "feature_extractor"')
    shape = list(input_shape) or list(meta.get("input_shape", []))
    task = task or meta.get("task")
    spec = pb.ModelSpec(
        name=name or meta.get("name", ""), version=version or meta.get("version", ""),
        description=description or meta.get("description", ""),
        license=license or meta.get("license", ""), input_shape=shape,
        class_labels=list(labels) or list(meta.get("class_labels", [])),
        tags=list(tags) or list(meta.get("tags", [])),
        # Unset: the server infers it from the shape, [F] tabular and [C, H, W] an image.
        task=_task_kind(task) if task else pb.TASK_KIND_UNSPECIFIED,
        kind=pb.MODEL_KIND_FEATURE_EXTRACTOR if feature_extractor or kind == "feature_extractor"
        else pb.MODEL_KIND_CLASSIFIER)
    if not spec.name:
        raise ValueError("a model needs a name (the name argument or \"name\" in metadata)")
    return spec


def _health_request(service: str) -> bytes:
    """grpc.health.v1.HealthCheckRequest{service} in protobuf wire format (field 1, string)."""
    data = service.encode("utf-8")
    if not data:
        return b""
    size, prefix = len(data), bytearray()
    while True:
        prefix.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            break
    return b"\x0a" + bytes(prefix) + data


def _health_status(data: bytes) -> str:
    """HealthCheckResponse.status (field 1, an enum varint) by name; UNKNOWN when absent."""
    status, i = 0, 0
    while i < len(data):
        key, shift, value = data[i], 0, 0
        i += 1
        if key & 7 != 0:  # this message has only the varint field 1
            raise ModelDockError(grpc.StatusCode.INTERNAL, "unexpected health response")
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if key >> 3 == 1:
            status = value
    return _HEALTH.get(status, f"STATUS_{status}")


class Client(LearningCalls):
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

    def close(self) -> None:
        """Closes the channel; the client cannot be used afterwards."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _unary(self, method, request):
        return _call(method, request, timeout=self._timeout, metadata=self._metadata)

    # -- models --------------------------------------------------------------------------------

    def register(self, path: str, name: Optional[str] = None, input_shape: Sequence[int] = (),
                 labels: Sequence[str] = (), description: str = "", license: str = "",
                 tags: Sequence[str] = (), version: str = "", tabular: bool = False,
                 wait: bool = True, feature_extractor: bool = False,
                 text: bool = False, audio: bool = False, task: Optional[str] = None,
                 metadata: Optional[Metadata] = None) -> Model:
        """Uploads a TorchScript file. With wait (the default), returns once the model is READY
        or FAILED (a FAILED model raises ModelDockError with FAILED_PRECONDITION).
        task: "image" (the default for [C, H, W]), "tabular", "text" or "audio"; or the flags
        tabular, text (forward(texts: List[str]) -> [N, K], no input_shape) and audio
        (forward(x [N, T]) on 16 kHz mono clips; input_shape [T]).
        feature_extractor: a headless model whose forward returns features [N, D]; no labels.
        metadata: a JSON sidecar's path (or its dict) with name, version, description, task,
        input_shape, class_labels, license, tags, kind; non-empty arguments override it."""
        task = task or ("text" if text else "audio" if audio else "tabular" if tabular else None)
        spec = _spec(metadata, name, input_shape, labels, description, license, tags, version,
                     task, feature_extractor)
        with open(path, "rb") as f:
            data = f.read()
        header = pb.RegisterModelHeader(spec=spec, size_bytes=len(data),
                                        sha256=hashlib.sha256(data).hexdigest())

        def messages():
            yield pb.RegisterModelRequest(header=header)
            for start in range(0, len(data), _CHUNK):
                yield pb.RegisterModelRequest(chunk=data[start:start + _CHUNK])

        response = _call(self._stub.RegisterModel, messages(), timeout=self._timeout,
                         metadata=self._metadata)
        return self._admitted(response.model, wait)

    def register_remote(self, endpoint: str, remote_model: str, name: Optional[str] = None,
                        input_shape: Sequence[int] = (), labels: Sequence[str] = (),
                        remote_version: str = "", description: str = "", license: str = "",
                        tags: Sequence[str] = (), version: str = "", wait: bool = True,
                        feature_extractor: bool = False, task: Optional[str] = None,
                        metadata: Optional[Metadata] = None) -> Model:
        """Registers a model that stays on a KServe v2 inference server (Triton, KServe,
        MLServer, another dock) at endpoint "host:port" (gRPC: a dock's --kserve-listen) or
        "http[s]://host:port[/path]" (HTTP/REST: a dock's --http-listen) under the name
        remote_model (remote_version: "" = the server's choice); the dock calls it over the
        protocol, nothing is uploaded. task and metadata as in register(); waits like it."""
        spec = _spec(metadata, name, input_shape, labels, description, license, tags, version,
                     task, feature_extractor)
        spec.remote.CopyFrom(pb.RemoteTarget(endpoint=endpoint, model=remote_model,
                                             version=remote_version))
        response = self._unary(self._stub.RegisterRemoteModel,
                               pb.RegisterRemoteModelRequest(spec=spec))
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

    def watch(self, model: str) -> Iterator[Model]:
        """Yields the model (id, NAME@VERSION or NAME) at each state change, starting with its
        current state, until READY or FAILED (then the iteration ends)."""
        stream = self._stub.WatchModel(pb.WatchModelRequest(model=model), timeout=self._timeout,
                                       metadata=self._metadata)
        try:
            for message in stream:
                yield Model._from_proto(message.model)
        except grpc.RpcError as e:
            raise ModelDockError(e.code(), e.details()) from None
        finally:
            stream.cancel()  # a caller that stops early ends the call

    def wait(self, model: str) -> Model:
        """Follows a model's state changes until READY or FAILED; returns the last state."""
        last = None
        for last in self.watch(model):
            pass
        return last

    def get(self, model: str) -> Model:
        """By id, NAME@VERSION, or NAME (its latest READY version)."""
        return Model._from_proto(self._unary(self._stub.GetModel,
                                             pb.GetModelRequest(model=model)).model)

    def nearest(self, model: str, k: int = 5) -> List[Tuple[Model, float]]:
        """A READY model's nearest models in its knowledge space, best first: (model,
        similarity) pairs, the similarity the inner product of the two knowledge vectors; at
        most k (1..100). FAILED_PRECONDITION for a model that is not READY or in no space."""
        response = self._unary(self._stub.ListNearestModels,
                               pb.ListNearestModelsRequest(model=model, k=k))
        return [(Model._from_proto(n.model), n.similarity) for n in response.models]

    def list_page(self, page_size: int = 100, page_token: str = "", name_contains: str = "",
                  tag: str = "", task: Optional[str] = None,
                  input_shape: Optional[Sequence[int]] = None,
                  state: Optional[str] = None) -> ModelPage:
        """One page of at most page_size (1..1000) models matching the filters; pass its
        next_page_token for the next page. Filters as in list()."""
        request = pb.ListModelsRequest(name_contains=name_contains, tag=tag,
                                       page_size=page_size, page_token=page_token)
        if task:
            request.task = _task_kind(task)
        if input_shape:
            request.input_shape.extend(int(d) for d in input_shape)
        if state:
            if state.lower() not in _STATE_FILTERS:
                raise ValueError(f"state must be one of {sorted(_STATE_FILTERS)}; got {state!r}")
            request.state = _STATE_FILTERS[state.lower()]
        r = self._unary(self._stub.ListModels, request)
        return ModelPage(models=[Model._from_proto(m) for m in r.models],
                         next_page_token=r.next_page_token, total_size=r.total_size)

    def list(self, name_contains: str = "", tag: str = "", task: Optional[str] = None,
             input_shape: Optional[Sequence[int]] = None,
             state: Optional[str] = None) -> List[Model]:
        """Every registered model matching the filters (all pages): name_contains a substring,
        tag, task ("image", "tabular", "text", "audio"), input_shape exactly, state ("ready",
        "probing", "pending", "failed")."""
        models, token = [], ""
        while True:
            page = self.list_page(1000, token, name_contains=name_contains, tag=tag, task=task,
                                  input_shape=input_shape, state=state)
            models += page.models
            token = page.next_page_token
            if not token:
                return models

    def delete(self, model: str, all_versions: bool = False) -> str:
        """Deletes one version (id, "name@version", or a name with one version), or with
        all_versions every version of a name; returns the (first) deleted id."""
        return self.delete_versions(model, all_versions)[0]

    def delete_versions(self, model: str, all_versions: bool = True) -> List[str]:
        """Like delete(), but returns every deleted id (all versions of a name by default)."""
        r = self._unary(self._stub.DeleteModel,
                        pb.DeleteModelRequest(model=model, all_versions=all_versions))
        return list(r.ids) or [r.id]

    def update(self, model: str, description: Optional[str] = None, license: Optional[str] = None,
               tags: Optional[Sequence[str]] = None) -> Model:
        """Edits metadata without a new upload; None leaves a field as it is; tags replace all
        (tags=[] removes every tag, as `modeldock update --clear-tags`)."""
        request = pb.UpdateModelRequest(model=model)
        if description is not None:
            request.description = description
        if license is not None:
            request.license = license
        if tags is not None:
            request.replace_tags = True
            request.tags.extend(tags)
        return Model._from_proto(self._unary(self._stub.UpdateModel, request).model)

    # -- keys, audit, health, scrub ------------------------------------------------------------

    def create_key(self, role: str, name: str = "") -> Dict[str, str]:
        """Admin: a new API key ("consumer", "provider" or "admin"). The secret is returned
        only here: {"id", "name", "role", "secret"}."""
        if role not in _ROLES:
            raise ValueError(f"role must be one of {sorted(_ROLES)}; got {role!r}")
        r = self._unary(self._stub.CreateApiKey, pb.CreateApiKeyRequest(role=_ROLES[role],
                                                                         name=name))
        return {"id": r.key.id, "name": r.key.name, "role": role, "secret": r.secret}

    def list_keys(self) -> List[Dict[str, object]]:
        """Admin: every key (never the secrets)."""
        r = self._unary(self._stub.ListApiKeys, pb.ListApiKeysRequest())
        return [{"id": k.id, "name": k.name,
                 "role": pb.ApiKeyRole.Name(k.role)[len("API_KEY_ROLE_"):].lower(),
                 "created_unix_ms": k.created_unix_ms, "revoked": k.revoked} for k in r.keys]

    def revoke_key(self, key_id: str) -> None:
        """Admin: revokes a key; it stops working on the next call."""
        self._unary(self._stub.RevokeApiKey, pb.RevokeApiKeyRequest(id=key_id))

    def audit(self, limit: int = 100, action: Optional[str] = None, actor: Optional[str] = None,
              target: Optional[str] = None) -> List[Dict[str, object]]:
        """Admin: who registered, updated, deleted what and when (newest first): at most limit
        entries. action ("register", "update", "delete", ...), actor (a key id; "" without
        --auth) and target keep only matching entries among those `limit` newest: the server
        filters nothing, so ask for a larger limit to look further back."""
        r = self._unary(self._stub.ListAuditLog, pb.ListAuditLogRequest(limit=limit))
        return [{"id": e.id, "time_ms": e.unix_ms, "actor": e.actor, "action": e.action,
                 "target": e.target, "detail": e.detail} for e in r.entries
                if (action is None or e.action == action) and (actor is None or e.actor == actor)
                and (target is None or e.target == target)]

    def health(self, service: str = "") -> str:
        """The grpc.health.v1 check: "SERVING", "NOT_SERVING" (e.g. draining), "UNKNOWN" or
        "SERVICE_UNKNOWN"; service "" is the whole server, "modeldock.v1.ModelDockService" the
        dock's service. An unknown service raises ModelDockError (NOT_FOUND)."""
        check = self._channel.unary_unary("/grpc.health.v1.Health/Check",
                                          request_serializer=_health_request,
                                          response_deserializer=_health_status)
        return _call(check, service, timeout=self._timeout, metadata=self._metadata)

    def scrub(self, wait: bool = True) -> ScrubReport:
        """Admin: re-hashes every stored model file and checks the stored probe features
        (`modeldock admin scrub`). With wait, returns the finished report; without, the scrub
        goes on in the background (state "running")."""
        return ScrubReport._from_proto(
            self._unary(self._stub.Scrub, pb.ScrubRequest(wait=wait)).report)
