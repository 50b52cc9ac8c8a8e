"""What the pipeline page needs: local validation of a DAG text, and the API's pipeline calls."""

from __future__ import annotations

from typing import Protocol

from lensflow.desktop.api_types import ConfigIssue
from lensflow.desktop.client_pipelines import PipelineValidation, PipelineVersion, ReplayJob
from lensflow.shared.config.pipeline import PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_model
from lensflow.shared.dag.compiler import compile_pipeline
from lensflow.shared.errors import ConfigError


def pipeline_issues(text: str, *, source: str = "pipeline.yaml") -> list[ConfigIssue]:
    """Every problem of a pipeline DAG text, with its line; empty if the workers accept it."""
    try:
        doc = YamlDocument(text, path=source)
        compile_pipeline(load_model(PipelineConfig, doc), doc=doc)
    except ConfigError as err:
        return [
            ConfigIssue(
                message=issue.message,
                field=issue.field,
                line=issue.location.line if issue.location else None,
                column=issue.location.column if issue.location else None,
            )
            for issue in err.issues
        ]
    return []


class PipelineApi(Protocol):
    """What the page needs of the API (:class:`lensflow.desktop.client.ApiClient` is one)."""

    def validate_pipeline(self, text: str) -> PipelineValidation:
        """Compile a DAG text on the server."""

    def create_pipeline(self, text: str, *, activate: bool = False) -> PipelineVersion:
        """Store a DAG text as a version, optionally active."""

    def pipelines(
        self,
        *,
        name: str | None = None,
        active: bool | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[PipelineVersion]:
        """Stored versions, newest first."""

    def replay_pipeline(self, version_id: int, *, limit: int = ...) -> ReplayJob:
        """Queue a replay of a stored version."""

    def replay_job(self, job_id: int) -> ReplayJob:
        """A replay job as it is now."""

    def activate_pipeline(self, version_id: int) -> PipelineVersion:
        """Make a stored version the active one."""
