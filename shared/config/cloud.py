"""Schema of the cloud tier config (``configs/cloud.yaml``): workers and API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from shared.config.base import StrictModel
from shared.config.common import LoggingConfig, MqttConfig, TlsConfig


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
    rate_limit: str = Field("600/minute", description="Per-key rate limit (limits syntax).")
    tls: TlsConfig | None = Field(None, description="Serve HTTPS with this certificate.")


class CloudConfig(StrictModel):
    """The whole cloud tier config."""

    pipeline: str = Field("configs/pipeline.yaml", description="Pipeline DAG file.")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig, description="Database.")
    crop_store: str = Field("var/crops", description="Folder of crop JPEGs, keyed by sha256.")
    intake: Intake = Field(default_factory=MqttIntake, description="Where crops come from.")
    max_message_bytes: int = Field(5_000_000, ge=1024, description="Larger messages: dead letter.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="HTTP API.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
