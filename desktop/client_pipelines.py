"""Pipeline DAG calls of :class:`lensflow.desktop.client.ApiClient` (``/v1/pipelines``).

``POST /v1/pipelines/validate`` compiles a DAG text as the workers do (each issue at its
line, or the nodes in execution order); ``POST /v1/pipelines`` stores a version (the same
text again answers the stored one) and may activate it; one version per pipeline name is
active. An invalid text is refused with 400 ``invalid_pipeline`` (:class:`ValidationFailed`,
its issues asked of the validate route so they carry their lines).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from lensflow.desktop.api_types import ConfigIssue
from lensflow.desktop.client_http import HttpApi
from lensflow.desktop.errors import ApiError, ValidationFailed


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PipelineValidation(_Model):
    """Whether the workers would accept a pipeline text; its nodes in execution order if so."""

    valid: bool
    name: str | None = None
    issues: list[ConfigIssue] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list)


class PipelineVersion(_Model):
    """A stored pipeline DAG version (one per name is active)."""

    id: int
    name: str
    sha256: str
    yaml: str
    created_at: datetime
    created_by: str
    active: bool


class ReplayJob(_Model):
    """A replay of a version over stored crops: progress, then the per-node report."""

    id: int
    pipeline_version_id: int
    state: str
    total: int
    done: int
    error: str = ""
    report: dict[str, Any] | None = None


_VERSIONS = TypeAdapter(list[PipelineVersion])


class PipelineCalls(HttpApi):
    """The pipeline DAG part of the API client."""

    def validate_pipeline(self, text: str) -> PipelineValidation:
        """Compile a DAG text as the workers will: each issue at its line, or the node order."""
        response = self._request("POST", "/v1/pipelines/validate", json={"yaml": text})
        return self._model(PipelineValidation, response)

    def create_pipeline(self, text: str, *, activate: bool = False) -> PipelineVersion:
        """Store a DAG text as a version (the stored one if the same text was stored before).

        Args:
            text: The pipeline YAML.
            activate: Make it the active version of its name.

        Raises:
            ValidationFailed: If the text is invalid; ``issues`` carry their lines.
            Forbidden: If the key may not write.

        """
        body = {"yaml": text, "activate": activate}
        try:
            response = self._request("POST", "/v1/pipelines", json=body)
        except ValidationFailed as err:
            if err.code == "invalid_pipeline":
                err.issues = self._pipeline_issues(text) or err.issues
            raise
        return self._model(PipelineVersion, response)

    def pipelines(
        self,
        *,
        name: str | None = None,
        active: bool | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[PipelineVersion]:
        """Pipeline versions, newest first (``active=True``: the active one of each name)."""
        params = {"limit": str(limit)}
        if name is not None:
            params["name"] = name
        if active is not None:
            params["active"] = "true" if active else "false"
        if before is not None:
            params["before"] = str(before)
        return self._adapt(_VERSIONS, self._get("/v1/pipelines", params=params))

    def pipeline(self, version_id: int) -> PipelineVersion:
        """One pipeline version with its text."""
        return self._model(PipelineVersion, self._get(f"/v1/pipelines/{version_id}"))

    def activate_pipeline(self, version_id: int) -> PipelineVersion:
        """Make a version the only active one of its name."""
        response = self._request("POST", f"/v1/pipelines/{version_id}/activate")
        return self._model(PipelineVersion, response)

    def replay_pipeline(self, version_id: int, *, limit: int = 500) -> ReplayJob:
        """Queue a replay of a version over the newest ``limit`` stored crops.

        Raises:
            ValidationFailed: ``no_crops`` when nothing is stored yet.

        """
        response = self._request(
            "POST", f"/v1/pipelines/{version_id}/replay", params={"limit": str(limit)}
        )
        return self._model(ReplayJob, response)

    def replay_job(self, job_id: int) -> ReplayJob:
        """A replay job as it is now."""
        return self._model(ReplayJob, self._get(f"/v1/replays/{job_id}"))

    def _pipeline_issues(self, text: str) -> list[ConfigIssue]:
        """The validate answer's issues of ``text`` (none if it cannot be had)."""
        try:
            return self.validate_pipeline(text).issues
        except ApiError:
            return []
