"""Schema of the cloud tier config (``configs/cloud.yaml``): workers and API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator

from lensflow.shared.config.base import StrictModel
from lensflow.shared.config.common import LoggingConfig, MqttConfig, TlsConfig
from lensflow.shared.config.edge import DetectorConfig
from lensflow.shared.config.search import SearchConfig
from lensflow.shared.protocol.envelope import DEFAULT_MAX_MESSAGE_BYTES


class MqttIntake(StrictModel):
    """Persistent MQTT v5 session with a stable client id (the embedded default)."""

    type: Literal["mqtt"] = "mqtt"
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    client_id: str = Field("lensflow-worker-1", description="Stable id: the session survives.")
    topic: str = Field("lensflow/v1/+/+/crops", description="Crops subscription.")
    session_expiry_s: int = Field(7 * 86400, ge=60, description="Broker keeps the session.")
    receive_maximum: int = Field(64, ge=1, le=65535, description="In-flight window (>= batch).")


class AmqpIntake(StrictModel):
    """RabbitMQ quorum queue fed by its MQTT plugin (the scale-out path)."""

    type: Literal["amqp"] = "amqp"
    url: SecretStr = Field(
        SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F"),
        description="AMQP URL; set it from the environment in production.",
    )
    queue: str = Field("lensflow.crops", description="Durable quorum queue name.")
    binding_key: str = Field("lensflow.v1.*.*.crops", description="Routing key from amq.topic.")
    prefetch: int = Field(64, ge=1, le=65535, description="Unacked deliveries per worker.")


Intake = Annotated[MqttIntake | AmqpIntake, Field(discriminator="type")]


class FolderCropStoreConfig(StrictModel):
    """Crop JPEGs and model bundles in a local (or shared, mounted) folder."""

    type: Literal["folder"] = "folder"
    path: str = Field("var/crops", description="Folder of crop JPEGs, keyed by sha256.")


class S3CropStoreConfig(StrictModel):
    """Crop JPEGs and model bundles in an S3-compatible bucket (AWS S3, MinIO, Ceph...).

    Credentials are never part of the config: boto3 finds them in its usual chain
    (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` in the environment, a profile, an
    instance or pod role).
    """

    type: Literal["s3"] = "s3"
    bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="The bucket (it must exist): 3-63 lowercase letters, digits, dots, dashes.",
    )
    endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+/?$",
        description="URL of an S3-compatible store (``http://minio:9000``); AWS when absent.",
    )
    public_endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+/?$",
        description="URL clients reach the store at, used only to presign ``serve: redirect`` "
        "URLs (``https://s3.example.com``) when ``endpoint`` is internal; ``endpoint`` when "
        "absent.",
    )
    prefix: str = Field(
        "", description="Key prefix inside the bucket: empty, or ending with '/' (``lensflow/``)."
    )
    region: str | None = Field(None, description="Region; boto3's default chain when absent.")
    addressing_style: Literal["path", "virtual"] | None = Field(
        None,
        description="Bucket in the URL path or host name; path with an endpoint, "
        "boto3's choice otherwise.",
    )
    serve: Literal["stream", "redirect"] = Field(
        "stream",
        description="How the API hands out crops and bundles: stream them through itself "
        "(clients need no access to the store), or redirect (307) to a presigned URL.",
    )
    presign_ttl_s: int = Field(
        300, ge=1, le=7 * 86400, description="How long a presigned URL stays valid."
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Connect and read timeout.")
    max_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Tries of one request (boto3 standard retries) before a transient "
        "failure reaches the caller (the worker then retries with backoff).",
    )

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_folder(cls, prefix: str) -> str:
        if prefix and (prefix.startswith("/") or not prefix.endswith("/")):
            raise ValueError(
                f"expected an empty prefix or one ending with '/' and not starting with it "
                f"(lensflow/), got {prefix!r}"
            )
        return prefix


def _folder_from_string(value: Any) -> Any:
    """A plain string is the folder store's path (the form of every older config)."""
    if isinstance(value, str):
        return {"type": "folder", "path": value}
    if isinstance(value, dict) and "type" not in value:
        raise ValueError(
            "expected a folder path, or a mapping with type: folder or type: s3, "
            f"got a mapping without type (keys {sorted(value)})"
        )
    return value


CropStoreConfig = Annotated[
    FolderCropStoreConfig | S3CropStoreConfig,
    Field(discriminator="type"),
    BeforeValidator(_folder_from_string),
]
"""Where crops and model bundles are kept: ``type: folder`` (or a plain path) or ``type: s3``."""


class DatabaseConfig(StrictModel):
    """Results database."""

    url: SecretStr = Field(
        SecretStr("sqlite:///var/lensflow.sqlite3"),
        description="SQLAlchemy URL: SQLite by default, postgresql+psycopg://... in production.",
    )


class ApiConfig(StrictModel):
    """The FastAPI server."""

    host: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(8080, ge=1, le=65535, description="Listen port.")
    max_request_bytes: int = Field(20_000_000, ge=1024, description="Largest request body.")
    max_model_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Largest model bundle `POST /v1/models` accepts (instead of "
        "max_request_bytes for that route).",
    )
    rate_limit: str = Field("600/minute", description="Per-key rate limit (limits syntax).")
    unauthenticated_rate_limit: str = Field(
        "60/minute",
        description="Per client address rate limit of requests without a valid API key (none, "
        "malformed, unknown or revoked), limits syntax: failed authentication is limited by "
        "where it comes from, not by the key it invents.",
    )
    tls: TlsConfig | None = Field(None, description="Serve HTTPS with this certificate.")


class ControlConfig(StrictModel):
    """The edge control plane: edge statuses and acks in, desired configs out (over MQTT).

    It runs inside ``lensflow cloud api``. The database holds each edge's desired config;
    the control plane publishes it (retained) on the edge's config topic when it is assigned,
    and again whenever the edge's heartbeat reports another applied hash, at most once per
    ``resend_after_s`` (a config the edge rejected is not re-sent until a new one is assigned).
    """

    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    client_id: str = Field("lensflow-control", description="Stable MQTT client id.")
    resend_after_s: float = Field(30.0, gt=0, description="Least time between two re-sends.")
    sweep_interval_s: float = Field(10.0, gt=0, description="How often assignments are checked.")
    offline_after_s: float = Field(
        60.0, gt=0, description="An edge silent this long is shown offline (no will seen)."
    )
    heartbeat_history_s: float = Field(
        21600.0,
        gt=0,
        description="How long edge heartbeats are kept to compare a rollout's health.",
    )


class IngestConfig(StrictModel):
    """HTTP ingest (``POST /v1/ingest``): whole images detected in the cloud, then cropped.

    The detector and the pipeline load on the first upload. Without this section the route
    answers 503. An upload is also bounded by ``api.max_request_bytes``.
    """

    detector: DetectorConfig = Field(
        description="The server's detector; ``model`` is an artifact path (.onnx, .xml or "
        "its folder, .pb), not a manifest name."
    )
    max_image_bytes: int = Field(10_000_000, ge=1024, description="Larger images: 413.")
    max_image_pixels: int = Field(
        50_000_000,
        ge=1,
        description="An image declaring more pixels is refused before decoding (400).",
    )
    classes: list[str] = Field(
        default_factory=list, description="Classes cropped (allow-list); empty: every class."
    )
    max_crops: int = Field(50, ge=1, le=1000, description="Most crops per image, best first.")
    padding: float = Field(0.1, ge=0, le=1, description="Padding around the box, box fraction.")
    max_side: int = Field(512, ge=32, le=4096, description="Resize crops to this longest side.")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of the crops.")
    workers: int = Field(
        1, ge=1, le=64, description="Images processed at once; > 1 needs thread-safe plugins."
    )


class WorkerConfig(StrictModel):
    """How a worker follows the active pipeline version (the database is the truth)."""

    version_poll_s: float = Field(
        2.0,
        gt=0,
        le=300,
        description="How often the active version is read and the worker reported.",
    )
    version_retry_s: float = Field(
        60.0, gt=0, description="Least time before a version that failed to load is tried again."
    )


class CloudConfig(StrictModel):
    """The whole cloud tier config."""

    pipeline: str = Field("configs/pipeline.yaml", description="Pipeline DAG file.")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig, description="Database.")
    crop_store: CropStoreConfig = Field(
        default_factory=FolderCropStoreConfig,
        description="Crop JPEGs and model bundles: a folder path, {type: folder, path}, or "
        "{type: s3, bucket, endpoint, prefix, ...}.",
    )
    intake: Intake = Field(default_factory=MqttIntake, description="Where crops come from.")
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=1024,
        le=DEFAULT_MAX_MESSAGE_BYTES,
        description="Larger crop messages become dead letters; at most the protocol's limit "
        "(4 MiB), which the edge never exceeds and the shipped broker config enforces.",
    )
    worker: WorkerConfig = Field(
        default_factory=WorkerConfig, description="Workers: following the active version."
    )
    api: ApiConfig = Field(default_factory=ApiConfig, description="HTTP API.")
    ingest: IngestConfig | None = Field(
        None, description="Detect and crop uploaded images (POST /v1/ingest); off when absent."
    )
    search: SearchConfig | None = Field(
        None, description="Image search: vector index, embedding cache, product lookup."
    )
    control: ControlConfig | None = Field(
        None, description="Edge statuses and config pushes over MQTT; off when absent."
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
