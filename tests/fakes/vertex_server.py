"""A small fake of the Vertex AI REST API (v1) and of a KFP template repository.

It serves 127.0.0.1 only and implements what medprune calls, with the real request and
response shapes, so the real ``google-cloud-aiplatform`` SDK (``api_transport="rest"``)
and kfp's ``RegistryClient`` talk to it unchanged:

- ``models:upload`` (a long-running operation, polled until done), models get / list,
  ``listVersions``, ``mergeVersionAliases``, operations get;
- ``pipelineJobs`` create / get, ``schedules`` create / get;
- ``POST /kfp/PROJECT/REPO`` (multipart template upload, answers ``PACKAGE/VERSION``);
- endpoints: create (operation) / get / list, ``deployModel`` and ``undeployModel``
  (operations that change the endpoint only when they finish without error, as Vertex
  does), ``PATCH`` of the traffic split (validated: sums to 100 over deployed models).

Like Vertex AI, it checks model version aliases against the Model proto's rule
(``[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]``, google/cloud/aiplatform_v1/types/model.py) and, with
:attr:`FakeVertex.project_numbers` set, names every resource it returns by the project
*number*, whichever form the request used (Vertex AI's resource names carry the number:
``Endpoint.network`` and ``PSCAutomationConfig`` docs, "{project} is a project number").

Every request is recorded (:attr:`FakeVertex.requests`), and failures can be injected
(:meth:`FakeVertex.fail_next`, :meth:`FakeVertex.fail_next_upload_operation`,
:meth:`FakeVertex.fail_next_operation` for endpoint operations).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

_LOC = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    403: "PERMISSION_DENIED",
}


#: Vertex AI's alias rule, from the Model proto's ``version_aliases`` field documentation.
_ALIAS = re.compile(r"[a-z][a-zA-Z0-9\-]{0,126}[a-z0-9]")


def _check_aliases(aliases: list[str]) -> None:
    for a in aliases:
        name = a[1:] if a.startswith("-") else a
        if not _ALIAS.fullmatch(name):
            raise _HttpError(
                400,
                f"Invalid version alias {name!r}: must match [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9]",
            )


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # parsed JSON, or {"fields": ..., "files": ...} for multipart, or raw bytes

    @property
    def json(self) -> dict[str, Any]:
        assert isinstance(self.body, dict), f"{self.method} {self.path} had no JSON body"
        return self.body


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str
    times: int


@dataclass
class FakeModel:
    model_id: str
    display_name: str
    versions: list[dict[str, Any]] = field(default_factory=list)


class FakeVertex:
    """State and request log of the fake; the HTTP handler calls :meth:`handle`."""

    def __init__(self, operation_polls: int = 1) -> None:
        self.requests: list[RecordedRequest] = []
        self.models: dict[str, FakeModel] = {}
        self.pipeline_jobs: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.templates: list[dict[str, Any]] = []
        self.endpoints: dict[str, dict[str, Any]] = {}
        self._fail_ops: dict[str, str] = {}
        self.custom_jobs: dict[str, dict[str, Any]] = {}
        #: State a custom job reaches on its first GET (None: it stays running until cancelled).
        self.custom_job_final_state: str | None = "JOB_STATE_SUCCEEDED"
        self.operation_polls = operation_polls
        self._operations: dict[str, dict[str, Any]] = {}
        self._failures: list[_Failure] = []
        self._fail_upload_op: str | None = None
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        #: ``{project id: project number}``: names in replies use the number, as Vertex does.
        self.project_numbers: dict[str, str] = {}

    def _project(self, project: str) -> str:
        return self.project_numbers.get(project, project)

    # --- test helpers -------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        message: str = "injected failure",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests matching METHOD and PATH regex with an error."""
        self._failures.append(
            _Failure(method.upper(), re.compile(path_regex), status, message, times)
        )

    def fail_next_upload_operation(self, message: str = "model import failed midway") -> None:
        """The next models:upload is accepted, but its long-running operation ends in error."""
        self._fail_upload_op = message

    def fail_next_operation(self, kind: str, message: str = "operation failed midway") -> None:
        """The next ``kind`` operation (``deployModel``, ``undeployModel``, ``createEndpoint``) is
        accepted but ends in error, changing nothing."""
        self._fail_ops[kind] = message

    def traffic(self, endpoint_id: str) -> dict[str, int]:
        """``{deployed_model_id: percent}`` of an endpoint."""
        return dict(self.endpoints[endpoint_id].get("trafficSplit") or {})

    def deployed(self, endpoint_id: str) -> dict[str, str]:
        """``{deployed_model_id: "MODEL_ID@VERSION"}`` of an endpoint."""
        out = {}
        for d in self.endpoints[endpoint_id].get("deployedModels", []):
            out[d["id"]] = d["model"].rsplit("/", 1)[1] + "@" + d.get("modelVersionId", "")
        return out

    def add_model(
        self,
        display_name: str,
        project: str,
        location: str,
        aliases: list[str] | None = None,
        artifact_uri: str = "gs://seed/model",
        labels: dict[str, str] | None = None,
    ) -> str:
        """Seed an existing model with one version; returns its resource name."""
        model_id = str(next(self._ids))
        m = FakeModel(model_id, display_name)
        self.models[model_id] = m
        body = {
            "displayName": display_name,
            "artifactUri": artifact_uri,
            "versionAliases": ["default", *(aliases or [])],
            "labels": labels or {},
        }
        self._new_version(m, self._project(project), location, body)
        return f"projects/{project}/locations/{location}/models/{model_id}"

    def find(self, method: str, path_regex: str) -> list[RecordedRequest]:
        rx = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and rx.search(r.path)]

    def aliases(self, model_id: str) -> dict[str, list[str]]:
        """``{version_id: aliases}`` of a model."""
        return {v["versionId"]: list(v["versionAliases"]) for v in self.models[model_id].versions}

    # --- request handling -----------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        split = urlsplit(raw_path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        parsed: Any = body
        ctype = headers.get("Content-Type", "")
        if body and "multipart/form-data" in ctype:
            parsed = _parse_multipart(ctype, body)
        elif body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, parsed))
            for f in self._failures:
                if f.times > 0 and f.method == method and f.pattern.search(path):
                    f.times -= 1
                    return f.status, google_error(f.status, f.message)
            try:
                return self._route(method, path, query, parsed)
            except _HttpError as e:
                return e.status, google_error(e.status, e.message)

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        if path.startswith("/kfp/") and method == "POST":
            return self._upload_template(path, body)
        # The SDK's REST operations client polls under /ui/ (its first URL binding).
        prefix = next((pre for pre in ("/v1/", "/ui/") if path.startswith(pre)), None)
        if prefix is None:
            raise _HttpError(404, f"unknown path {path}")
        p = path[len(prefix) :]
        routes = [
            ("POST", rf"^{_LOC}/models:upload$", self._upload_model),
            ("GET", rf"^{_LOC}/operations/(?P<op>[^/]+)$", self._get_operation),
            ("GET", rf"^{_LOC}/models$", self._list_models),
            ("GET", rf"^{_LOC}/models/(?P<model>[^/@:]+):listVersions$", self._list_versions),
            (
                "POST",
                rf"^{_LOC}/models/(?P<model>[^/@:]+)(?:@(?P<version>[^/:]+))?:mergeVersionAliases$",
                self._merge_aliases,
            ),
            (
                "GET",
                rf"^{_LOC}/models/(?P<model>[^/@:]+)(?:@(?P<version>[^/:]+))?$",
                self._get_model,
            ),
            ("POST", rf"^{_LOC}/endpoints$", self._create_endpoint),
            ("GET", rf"^{_LOC}/endpoints$", self._list_endpoints),
            ("GET", rf"^{_LOC}/endpoints/(?P<endpoint>[^/:]+)$", self._get_endpoint),
            ("PATCH", rf"^{_LOC}/endpoints/(?P<endpoint>[^/:]+)$", self._patch_endpoint),
            ("POST", rf"^{_LOC}/endpoints/(?P<endpoint>[^/:]+):deployModel$", self._deploy_model),
            (
                "POST",
                rf"^{_LOC}/endpoints/(?P<endpoint>[^/:]+):undeployModel$",
                self._undeploy_model,
            ),
            ("POST", rf"^{_LOC}/pipelineJobs$", self._create_pipeline_job),
            ("GET", rf"^{_LOC}/pipelineJobs/(?P<job>[^/]+)$", self._get_pipeline_job),
            ("POST", rf"^{_LOC}/schedules$", self._create_schedule),
            ("GET", rf"^{_LOC}/schedules/(?P<schedule>[^/]+)$", self._get_schedule),
            ("GET", rf"^{_LOC}/schedules$", self._list_schedules),
            ("DELETE", rf"^{_LOC}/schedules/(?P<schedule>[^/]+)$", self._delete_schedule),
            ("POST", rf"^{_LOC}/customJobs$", self._create_custom_job),
            ("GET", rf"^{_LOC}/customJobs/(?P<job>[^/:]+)$", self._get_custom_job),
            ("POST", rf"^{_LOC}/customJobs/(?P<job>[^/:]+):cancel$", self._cancel_custom_job),
        ]
        for m, rx, fn in routes:
            match = re.match(rx, p)
            if m == method and match:
                g = match.groupdict()
                g["project"] = self._project(g["project"])
                return fn(g, query, body)
        raise _HttpError(404, f"no route for {method} {path}")

    # --- models ---------------------------------------------------------------------
    def _model(self, g: dict[str, str]) -> FakeModel:
        m = self.models.get(g["model"])
        if m is None:
            name = f"projects/{g['project']}/locations/{g['location']}/models/{g['model']}"
            raise _HttpError(404, f"Model {name} not found.")
        return m

    def _version(self, m: FakeModel, version: str | None) -> dict[str, Any]:
        version = version or "default"
        for v in m.versions:
            if v["versionId"] == version or version in v["versionAliases"]:
                return v
        raise _HttpError(404, f"Model {m.model_id}@{version} not found.")

    def _new_version(self, m: FakeModel, project: str, location: str, spec: dict) -> dict:
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        version_id = str(len(m.versions) + 1)
        aliases = list(spec.get("versionAliases") or [])
        if not m.versions and "default" not in aliases:
            aliases.append("default")  # the first version is always the default
        # An alias names one version: moving it takes it off the version that had it.
        for v in m.versions:
            v["versionAliases"] = [a for a in v["versionAliases"] if a not in aliases]
        version = {
            **{k: v for k, v in spec.items() if k != "versionAliases"},
            "name": f"projects/{project}/locations/{location}/models/{m.model_id}",
            "displayName": spec.get("displayName", m.display_name),
            "versionId": version_id,
            "versionAliases": aliases,
            # a model with a serving container deploys on dedicated machines, as on Vertex
            "supportedDeploymentResourcesTypes": spec.get(
                "supportedDeploymentResourcesTypes", ["DEDICATED_RESOURCES"]
            ),
            "createTime": now,
            "updateTime": now,
            "versionCreateTime": now,
            "versionUpdateTime": now,
        }
        m.versions.append(version)
        return version

    def _upload_model(self, g: dict, query: dict, body: dict) -> tuple[int, Any]:
        spec = dict(body.get("model") or {})
        _check_aliases(list(spec.get("versionAliases") or []))
        if not spec.get("displayName"):
            raise _HttpError(400, "model.display_name is required")
        if not str(spec.get("artifactUri", "")).startswith("gs://"):
            raise _HttpError(400, "model.artifact_uri must be a gs:// URI")
        parent = body.get("parentModel")
        op_id = str(next(self._ids))
        op_name = f"projects/{g['project']}/locations/{g['location']}/operations/{op_id}"
        if parent:
            mm = re.fullmatch(rf"{_LOC}/models/(?P<model>[^/@]+)", parent)
            if not mm or mm["model"] not in self.models:
                raise _HttpError(404, f"Parent model {parent} not found.")
            model = self.models[mm["model"]]
        else:
            model = None
        op: dict[str, Any] = {
            "name": op_name,
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelOperationMetadata"
            },
            "done": False,
        }
        fail = self._fail_upload_op
        self._fail_upload_op = None
        # The version is created only when the operation finishes without error, so a
        # failed upload leaves no version and moves no alias (as Vertex does).
        self._operations[op_id] = {
            "op": op,
            "polls_left": self.operation_polls,
            "fail": fail,
            "model": model,
            "spec": spec,
            "g": g,
        }
        if self.operation_polls <= 0:
            self._finish(op_id)
        return 200, op

    def _finish(self, op_id: str) -> None:
        rec = self._operations[op_id]
        op, g = rec["op"], rec["g"]
        op["done"] = True
        if rec.get("apply") is not None:  # endpoint operations
            if rec["fail"]:
                op["error"] = {"code": 13, "message": rec["fail"]}
                return
            try:
                op["response"] = rec["apply"]()
            except _HttpError as exc:
                op["error"] = {"code": 9 if exc.status == 400 else 13, "message": exc.message}
            return
        if rec["fail"]:
            op["error"] = {"code": 13, "message": rec["fail"]}
            return
        model = rec["model"]
        if model is None:
            model = FakeModel(str(next(self._ids)), rec["spec"]["displayName"])
            self.models[model.model_id] = model
        version = self._new_version(model, g["project"], g["location"], rec["spec"])
        op["response"] = {
            "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
            "model": version["name"],
            "modelVersionId": version["versionId"],
        }

    def _get_operation(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        rec = self._operations.get(g["op"])
        if rec is None:
            raise _HttpError(404, f"operation {g['op']} not found")
        if not rec["op"]["done"]:
            rec["polls_left"] -= 1
            if rec["polls_left"] <= 0:
                self._finish(g["op"])
        return 200, rec["op"]

    def _get_model(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        return 200, self._version(self._model(g), g.get("version"))

    def _list_models(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        flt = (query.get("filter") or [""])[0]
        m = re.search(r'display_name\s*=\s*"([^"]*)"', flt)
        here = f"projects/{g['project']}/locations/{g['location']}/"
        out = [
            self._version(model, "default")
            for model in self.models.values()
            if (m is None or model.display_name == m.group(1))
            and (not model.versions or model.versions[0]["name"].startswith(here))
        ]  # one region's models
        return 200, {"models": out}

    def _list_versions(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        return 200, {"models": list(self._model(g).versions)}

    def _merge_aliases(self, g: dict, query: dict, body: dict) -> tuple[int, Any]:
        model = self._model(g)
        version = self._version(model, g.get("version"))
        changes = body.get("versionAliases") or []
        if not changes:
            raise _HttpError(400, "version_aliases must not be empty")
        _check_aliases(changes)
        for a in changes:
            if a.startswith("-"):
                if a[1:] == "default":
                    raise _HttpError(400, "the default alias cannot be removed")
                version["versionAliases"] = [x for x in version["versionAliases"] if x != a[1:]]
            else:
                for v in model.versions:
                    v["versionAliases"] = [x for x in v["versionAliases"] if x != a]
                version["versionAliases"].append(a)
        return 200, version

    # --- endpoints --------------------------------------------------------------------
    def _operation(self, g: dict, kind: str, apply: Any, metadata_type: str) -> dict[str, Any]:
        """A long-running operation that runs ``apply`` (endpoint changes) when it finishes."""
        op_id = str(next(self._ids))
        op = {
            "name": f"projects/{g['project']}/locations/{g['location']}/operations/{op_id}",
            "metadata": {
                "@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{metadata_type}"
            },
            "done": False,
        }
        self._operations[op_id] = {
            "op": op,
            "polls_left": self.operation_polls,
            "fail": self._fail_ops.pop(kind, None),
            "apply": apply,
            "g": g,
        }
        if self.operation_polls <= 0:
            self._finish(op_id)
        return op

    def _endpoint(self, g: dict) -> dict[str, Any]:
        ep = self.endpoints.get(g["endpoint"])
        if ep is None or not ep["name"].startswith(
            f"projects/{g['project']}/locations/{g['location']}/"
        ):
            name = f"projects/{g['project']}/locations/{g['location']}/endpoints/{g['endpoint']}"
            raise _HttpError(404, f"Endpoint {name} not found.")
        return ep

    def _create_endpoint(self, g: dict, query: dict, body: dict) -> tuple[int, Any]:
        if not body.get("displayName"):
            raise _HttpError(400, "endpoint.display_name is required")
        endpoint_id = (query.get("endpointId") or [str(next(self._ids))])[0]
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        endpoint = {
            **body,
            "name": f"projects/{g['project']}/locations/{g['location']}/endpoints/{endpoint_id}",
            "deployedModels": [],
            "trafficSplit": {},
            "createTime": now,
            "updateTime": now,
        }

        def apply() -> dict[str, Any]:
            self.endpoints[endpoint_id] = endpoint
            return {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.Endpoint", **endpoint}

        return 200, self._operation(g, "createEndpoint", apply, "CreateEndpointOperationMetadata")

    def _list_endpoints(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        flt = (query.get("filter") or [""])[0]
        m = re.search(r'display_name\s*=\s*"([^"]*)"', flt)
        prefix = f"projects/{g['project']}/locations/{g['location']}/"
        out = [
            e
            for e in self.endpoints.values()
            if e["name"].startswith(prefix) and (m is None or e.get("displayName") == m.group(1))
        ]
        return 200, {"endpoints": out}

    def _get_endpoint(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        return 200, self._endpoint(g)

    @staticmethod
    def _check_split(split: dict[str, int], ids: set[str]) -> dict[str, int]:
        split = {k: int(v) for k, v in split.items()}
        unknown = set(split) - ids
        if unknown:
            raise _HttpError(
                400, f"traffic split names deployed models that do not exist: {sorted(unknown)}"
            )
        if ids and sum(split.values()) != 100:
            raise _HttpError(400, f"traffic split must sum to 100, got {sum(split.values())}")
        if any(v < 0 for v in split.values()):
            raise _HttpError(400, "traffic split values must be >= 0")
        return {k: v for k, v in split.items() if v > 0}

    def _patch_endpoint(self, g: dict, query: dict, body: dict) -> tuple[int, Any]:
        ep = self._endpoint(g)
        mask = (query.get("updateMask") or query.get("update_mask") or [""])[0]
        fields = {f.strip() for f in mask.split(",") if f.strip()}
        if not fields:
            raise _HttpError(400, "update_mask is required")
        for f in fields:
            key = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), f)
            if key == "trafficSplit":
                ids = {d["id"] for d in ep["deployedModels"]}
                ep["trafficSplit"] = self._check_split(body.get("trafficSplit") or {}, ids)
            elif key in ("displayName", "description", "labels"):
                ep[key] = body.get(key)
            else:
                raise _HttpError(400, f"field {f} cannot be updated")
        ep["updateTime"] = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        return 200, ep

    def _deploy_model(self, g: dict, query: dict, body: dict) -> tuple[int, Any]:
        ep = self._endpoint(g)
        dm = dict(body.get("deployedModel") or {})
        mm = re.fullmatch(
            rf"{_LOC}/models/(?P<model>[^/@]+)(?:@(?P<version>[^/]+))?", dm.get("model", "")
        )
        if not mm or mm["model"] not in self.models:
            raise _HttpError(404, f"Model {dm.get('model')} not found.")
        if (self._project(mm["project"]), mm["location"]) != (g["project"], g["location"]):
            raise _HttpError(
                400, f"model {dm['model']} is not in the endpoint's region {g['location']}"
            )
        version = self._version(self.models[mm["model"]], mm["version"])
        resources = dm.get("dedicatedResources") or dm.get("automaticResources")
        if not resources:
            raise _HttpError(400, "deployed_model needs dedicated_resources or automatic_resources")
        split = dict(body.get("trafficSplit") or {})

        def apply() -> dict[str, Any]:
            new_id = str(next(self._ids))
            ids = {d["id"] for d in ep["deployedModels"]} | {new_id}
            resolved = {(new_id if k == "0" else k): v for k, v in split.items()}
            if not resolved:
                resolved = {new_id: 100} if not ep["deployedModels"] else dict(ep["trafficSplit"])
            new_split = self._check_split(resolved, ids)
            deployed = {
                **dm,
                "id": new_id,
                "model": f"projects/{g['project']}/locations/{g['location']}/models/{mm['model']}",
                "modelVersionId": version["versionId"],
                "createTime": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            }
            ep["deployedModels"].append(deployed)
            ep["trafficSplit"] = new_split
            return {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeployModelResponse",
                "deployedModel": deployed,
            }

        return 200, self._operation(g, "deployModel", apply, "DeployModelOperationMetadata")

    def _undeploy_model(self, g: dict, query: dict, body: dict) -> tuple[int, Any]:
        ep = self._endpoint(g)
        dm_id = body.get("deployedModelId")
        ids = {d["id"] for d in ep["deployedModels"]}
        if dm_id not in ids:
            raise _HttpError(404, f"deployed model {dm_id} not found on {ep['name']}")
        remaining = ids - {dm_id}
        split = body.get("trafficSplit")
        if split is None:
            if ep["trafficSplit"].get(dm_id, 0) > 0 and remaining:
                raise _HttpError(
                    400,
                    f"deployed model {dm_id} receives traffic; give a traffic split "
                    "for the remaining models",
                )
            split = {k: v for k, v in ep["trafficSplit"].items() if k != dm_id}
        new_split = self._check_split(dict(split), remaining)

        def apply() -> dict[str, Any]:
            ep["deployedModels"] = [d for d in ep["deployedModels"] if d["id"] != dm_id]
            ep["trafficSplit"] = new_split
            return {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UndeployModelResponse"}

        return 200, self._operation(g, "undeployModel", apply, "UndeployModelOperationMetadata")

    # --- pipeline jobs and schedules ------------------------------------------------
    def _create_pipeline_job(self, g: dict, query: dict, body: dict) -> tuple[int, Any]:
        job_id = (query.get("pipelineJobId") or [str(next(self._ids))])[0]
        name = f"projects/{g['project']}/locations/{g['location']}/pipelineJobs/{job_id}"
        if name in self.pipeline_jobs:
            raise _HttpError(409, f"PipelineJob {name} already exists")
        job = {
            **body,
            "name": name,
            "state": "PIPELINE_STATE_PENDING",
            "createTime": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        }
        self.pipeline_jobs[name] = job
        return 200, job

    def _get_pipeline_job(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        name = f"projects/{g['project']}/locations/{g['location']}/pipelineJobs/{g['job']}"
        if name not in self.pipeline_jobs:
            raise _HttpError(404, f"PipelineJob {name} not found")
        return 200, self.pipeline_jobs[name]

    def _create_schedule(self, g: dict, query: dict, body: dict) -> tuple[int, Any]:
        if not body.get("cron"):
            raise _HttpError(400, "schedule.cron is required")
        name = f"projects/{g['project']}/locations/{g['location']}/schedules/{next(self._ids)}"
        schedule = {
            **body,
            "name": name,
            "state": "ACTIVE",
            "createTime": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        }
        self.schedules[name] = schedule
        return 200, schedule

    def _get_schedule(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        name = f"projects/{g['project']}/locations/{g['location']}/schedules/{g['schedule']}"
        if name not in self.schedules:
            raise _HttpError(404, f"Schedule {name} not found")
        return 200, self.schedules[name]

    def _list_schedules(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        flt = (query.get("filter") or [""])[0]
        m = re.search(r'display_name\s*=\s*"([^"]*)"', flt)
        prefix = f"projects/{g['project']}/locations/{g['location']}/schedules/"
        out = [
            s
            for n, s in self.schedules.items()
            if n.startswith(prefix) and (m is None or s.get("displayName") == m.group(1))
        ]
        return 200, {"schedules": out}

    def _delete_schedule(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        name = f"projects/{g['project']}/locations/{g['location']}/schedules/{g['schedule']}"
        if self.schedules.pop(name, None) is None:
            raise _HttpError(404, f"Schedule {name} not found")
        op_id = str(next(self._ids))
        op = {
            "name": f"projects/{g['project']}/locations/{g['location']}/operations/{op_id}",
            "done": True,
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata"
            },
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
        }
        self._operations[op_id] = {"op": op, "polls_left": 0}
        return 200, op

    # --- custom jobs -------------------------------------------------------------------
    def _custom_job_name(self, g: dict) -> str:
        return f"projects/{g['project']}/locations/{g['location']}/customJobs/{g['job']}"

    def _create_custom_job(self, g: dict, query: dict, body: dict) -> tuple[int, Any]:
        pools = (body.get("jobSpec") or {}).get("workerPoolSpecs") or []
        if not body.get("displayName") or not pools:
            raise _HttpError(
                400, "custom_job.display_name and job_spec.worker_pool_specs are required"
            )
        if any(not (p.get("containerSpec") or {}).get("imageUri") for p in pools):
            raise _HttpError(400, "every worker pool needs container_spec.image_uri")
        name = f"projects/{g['project']}/locations/{g['location']}/customJobs/{next(self._ids)}"
        job = {
            **body,
            "name": name,
            "state": "JOB_STATE_PENDING",
            "createTime": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        }
        self.custom_jobs[name] = job
        return 200, job

    def _get_custom_job(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        job = self.custom_jobs.get(self._custom_job_name(g))
        if job is None:
            raise _HttpError(404, f"CustomJob {self._custom_job_name(g)} not found")
        if job["state"] == "JOB_STATE_PENDING":
            job["state"] = self.custom_job_final_state or "JOB_STATE_RUNNING"
        return 200, job

    def _cancel_custom_job(self, g: dict, query: dict, body: Any) -> tuple[int, Any]:
        job = self.custom_jobs.get(self._custom_job_name(g))
        if job is None:
            raise _HttpError(404, f"CustomJob {self._custom_job_name(g)} not found")
        job["state"] = "JOB_STATE_CANCELLED"
        return 200, {}

    # --- KFP template repository ------------------------------------------------------
    def _upload_template(self, path: str, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or "content" not in body.get("files", {}):
            raise _HttpError(400, "multipart upload with a 'content' file is required")
        content = body["files"]["content"]
        try:
            spec = yaml.safe_load(content)
            package = spec["pipelineInfo"]["name"]
        except Exception:
            raise _HttpError(400, "content is not a compiled KFP pipeline") from None
        version = "sha256:" + hashlib.sha256(content).hexdigest()
        tags = [t for t in body["fields"].get("tags", "").split(",") if t]
        self.templates.append(
            {"path": path, "package": package, "version": version, "tags": tags, "content": content}
        )
        return 200, f"{package}/{version}"


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def google_error(status: int, message: str) -> dict[str, Any]:
    """The body of a Google API error reply (`{"error": {code, message, status}}`)."""
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}


def _parse_multipart(ctype: str, body: bytes) -> dict[str, Any]:
    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename():
            files[name] = payload
        else:
            fields[name] = payload.decode()
    return {"fields": fields, "files": files}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeVertex

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.fake.handle(self.command, self.path, self.headers, body)
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


def serve_on_loopback(fake: Any, name: str) -> Any:
    """Serve ``fake`` (anything with ``handle(method, raw_path, headers, body) -> (status,
    JSON payload or text)`` and ``server`` / ``port`` attributes) on 127.0.0.1 on a free
    port, in a daemon thread; stop it with :func:`stop_fake_vertex`. Other Google REST
    fakes (Secret Manager) reuse this plumbing and :func:`google_error`."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    fake.port = fake.server.server_address[1]
    threading.Thread(
        target=fake.server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
        name=name,
    ).start()
    return fake


def start_fake_vertex(operation_polls: int = 1) -> FakeVertex:
    """Start the fake on 127.0.0.1 on a free port, in a daemon thread; call ``stop_fake_vertex``."""
    return serve_on_loopback(FakeVertex(operation_polls=operation_polls), "fake-vertex")


def stop_fake_vertex(fake: Any) -> None:
    if fake.server is not None:
        fake.server.shutdown()
        fake.server.server_close()
