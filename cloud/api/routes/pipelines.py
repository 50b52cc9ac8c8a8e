"""Pipeline DAG versions: validate with the workers' own compiler, store, list, activate.

A version is the YAML text of a pipeline file, stored under the pipeline's ``name`` with the
SHA-256 of its text (storing the same text again answers the existing version); one version
per name is active. Workers still read their local pipeline file: ``GET
/v1/pipelines?active=true`` is what one would poll to follow the active version.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lensflow.cloud.api.auth import Operator, Viewer
from lensflow.cloud.api.control_schemas import ConfigIssueOut, issues_out
from lensflow.cloud.api.deps import DbSession
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.schemas import ErrorBody
from lensflow.cloud.storage.models import PipelineVersion
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.config.pipeline import PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_model
from lensflow.shared.dag.compiler import CompiledPipeline, compile_pipeline
from lensflow.shared.errors import ConfigError, ConfigIssue, LensflowError

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])

MAX_PIPELINE_CHARS = 256 * 1024
"""Largest pipeline text accepted."""
MAX_NAME = 128
"""Longest pipeline name (the ``pipeline_versions.name`` column)."""
MAX_LIST = 500
MAX_ID = 2**63 - 1
PipelineId = Annotated[int, Path(ge=1, le=MAX_ID, description="A pipeline version id.")]
SOURCE = "pipeline.yaml"
NO_NUL = r"^[^\x00]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PipelineText(_Model):
    """A pipeline DAG as YAML text (the workers' pipeline file)."""

    yaml: str = Field(min_length=1, max_length=MAX_PIPELINE_CHARS, description="YAML text.")


class PipelineCreate(PipelineText):
    """A pipeline version to store."""

    activate: bool = Field(False, description="Make it the active version of its name.")


class PipelineValidation(_Model):
    """Whether the workers would accept a pipeline text; its nodes in execution order if so."""

    valid: bool
    name: str | None = Field(None, description="The pipeline's name, when valid.")
    issues: list[ConfigIssueOut]
    nodes: list[str] = Field(description="Node names in execution order (empty when invalid).")


class PipelineVersionOut(_Model):
    """A stored pipeline version."""

    id: int
    name: str
    sha256: str = Field(description="Hex SHA-256 of the UTF-8 text.")
    yaml: str
    created_at: datetime
    created_by: str
    active: bool


def compile_pipeline_text(
    text: str, *, registry: PluginRegistry | None = None, source: str = SOURCE
) -> CompiledPipeline:
    """Validate and compile a pipeline YAML text as the workers do (``lensflow pipeline check``).

    Model names are not looked up (the registry's model store is dropped): which models a
    worker has is that worker's concern, and it reports a version it cannot load. Nor is a
    module imported for a ``package.module.Class`` node (:func:`_unloaded_classes`).

    Raises:
        ConfigError: One issue (with its line where known) per problem.

    """
    doc = YamlDocument(text, path=source)
    config = load_model(PipelineConfig, doc)
    if not 1 <= len(config.name) <= MAX_NAME or "\x00" in config.name:
        raise ConfigError(
            [
                ConfigIssue(
                    f"expected a name of 1-{MAX_NAME} characters without NUL, "
                    f"got {len(config.name)} characters",
                    doc.location(("name",)),
                    "name",
                )
            ]
        )
    plugins = (registry or default_registry()).with_models(None)
    unloaded = _unloaded_classes(config, plugins, doc)
    if unloaded:
        raise ConfigError(unloaded)
    try:
        return compile_pipeline(config, registry=plugins, doc=doc)
    except ConfigError:
        raise
    except LensflowError as err:  # a plugin failing while its params are checked
        raise ConfigError([ConfigIssue(f"the pipeline cannot be compiled: {err}")]) from err


def _unloaded_classes(
    config: PipelineConfig, plugins: PluginRegistry, doc: YamlDocument
) -> list[ConfigIssue]:
    """An issue per node naming ``package.module.Class`` of a module this process has not loaded.

    Resolving such a class imports its module, which runs the module's top-level code: over
    the API, any caller could make the server import any installed module. The workers import
    it when they load their pipeline file; the API checks the class only when its module is
    loaded already (plugins installed by entry point are checked by their key).
    """
    issues = []
    for index, node in enumerate(config.pipeline):
        spec = node.class_
        module = spec.rpartition(".")[0]
        if spec in plugins.plugins or spec in plugins.unavailable or not module:
            continue
        if module not in sys.modules:
            issues.append(
                ConfigIssue(
                    f"expected a registered classifier key or a class of a module the API has "
                    f"loaded, got {spec!r}: the API does not import {module!r} (the workers "
                    "do when they load the pipeline)",
                    doc.location(("pipeline", index, "class")),
                    f"pipeline.{index}.class",
                )
            )
    return issues


@router.post("/validate", summary="Validate a pipeline DAG")
def validate(body: PipelineText, _caller: Viewer) -> PipelineValidation:
    """Compile a pipeline text as the workers will; give its node order or each issue's line."""
    try:
        compiled = compile_pipeline_text(body.yaml)
    except ConfigError as err:
        return PipelineValidation(valid=False, issues=issues_out(err), nodes=[])
    nodes = [node.name for node in compiled.nodes]
    return PipelineValidation(valid=True, name=compiled.name, issues=[], nodes=nodes)


@router.post(
    "",
    status_code=201,
    summary="Store a pipeline version",
    responses={
        200: {"model": PipelineVersionOut, "description": "The same text was stored."},
        409: {
            "model": ErrorBody,
            "description": "The version changed while it was stored (`conflict`); try again.",
        },
    },
)
def create(
    body: PipelineCreate, caller: Operator, session: DbSession, response: Response
) -> PipelineVersionOut:
    """Store a valid pipeline text (201), or answer the version with the same text (200).

    Invalid text is refused with 400 ``invalid_pipeline``, each issue in the message with its
    line (``POST /v1/pipelines/validate`` gives them one by one). With ``activate`` the
    version becomes the only active one of its name.
    """
    try:
        compiled = compile_pipeline_text(body.yaml)
    except ConfigError as err:
        raise ApiError(
            400, "invalid_pipeline", f"the pipeline is not valid: {_describe(err)}"
        ) from err
    digest = hashlib.sha256(body.yaml.encode("utf-8")).hexdigest()
    row = _existing(session, compiled.name, digest)
    response.status_code = 200
    if row is None:
        session.add(
            PipelineVersion(
                name=compiled.name,
                yaml_text=body.yaml,
                sha256=digest,
                created_by=caller.name,
                active=False,
            )
        )
        try:
            session.commit()
        except IntegrityError:  # stored by a concurrent request meanwhile: answer that one
            session.rollback()
        else:
            response.status_code = 201
        row = _existing(session, compiled.name, digest)
        if row is None:
            raise ApiError(409, "conflict", "the pipeline version changed meanwhile; try again")
    if body.activate:
        row = _activate(session, row.id)
    return _out(row)


@router.get("", summary="List pipeline versions")
def list_versions(
    _caller: Viewer,
    session: DbSession,
    name: Annotated[
        str | None, Query(max_length=MAX_NAME, pattern=NO_NUL, description="Only this name.")
    ] = None,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Versions older than this id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> list[PipelineVersionOut]:
    """Versions, newest first; ``?active=true`` gives the active version of each name."""
    query = select(PipelineVersion).order_by(PipelineVersion.id.desc()).limit(limit)
    if name is not None:
        query = query.where(PipelineVersion.name == name)
    if active is not None:
        query = query.where(PipelineVersion.active.is_(active))
    if before is not None:
        query = query.where(PipelineVersion.id < before)
    return [_out(row) for row in session.scalars(query)]


@router.get("/{pipeline_id}", summary="One pipeline version")
def get_version(pipeline_id: PipelineId, _caller: Viewer, session: DbSession) -> PipelineVersionOut:
    """A version with its text."""
    return _out(_get(session, pipeline_id))


@router.post("/{pipeline_id}/activate", summary="Activate a pipeline version")
def activate(pipeline_id: PipelineId, _caller: Operator, session: DbSession) -> PipelineVersionOut:
    """Make the version the only active one of its name."""
    return _out(_activate(session, pipeline_id))


def _get(session: Session, pipeline_id: int) -> PipelineVersion:
    row = session.get(PipelineVersion, pipeline_id)
    if row is None:
        raise _unknown(pipeline_id)
    return row


def _unknown(pipeline_id: int) -> ApiError:
    return ApiError(
        404, "unknown_pipeline", f"expected an existing pipeline version, got {pipeline_id}"
    )


def _existing(session: Session, name: str, digest: str) -> PipelineVersion | None:
    query = select(PipelineVersion).where(
        PipelineVersion.name == name, PipelineVersion.sha256 == digest
    )
    return session.scalars(query).one_or_none()


def _activate(session: Session, pipeline_id: int) -> PipelineVersion:
    """Deactivate every other version of the name and activate this one, in one transaction."""
    session.rollback()  # start afresh: the lock below is taken before anything is read
    row = session.get(PipelineVersion, pipeline_id, with_for_update=True)
    if row is None:
        raise _unknown(pipeline_id)
    siblings = select(PipelineVersion.id).where(PipelineVersion.name == row.name)
    list(session.scalars(siblings.with_for_update()))  # serialise concurrent activations
    session.execute(
        update(PipelineVersion)
        .where(PipelineVersion.name == row.name, PipelineVersion.id != row.id)
        .values(active=False)
    )
    row.active = True
    session.commit()
    session.refresh(row)
    return row


def _describe(err: ConfigError) -> str:
    parts = []
    for issue in err.issues:
        where = f"line {issue.location.line}: " if issue.location else ""
        what = f"{issue.field}: " if issue.field else ""
        parts.append(f"{where}{what}{issue.message}")
    return "; ".join(parts)


def _out(row: PipelineVersion) -> PipelineVersionOut:
    return PipelineVersionOut(
        id=row.id,
        name=row.name,
        sha256=row.sha256,
        yaml=row.yaml_text,
        created_at=row.created_at,
        created_by=row.created_by,
        active=row.active,
    )
