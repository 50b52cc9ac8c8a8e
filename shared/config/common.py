"""Config sections used by more than one tier: MQTT connection, TLS, logging."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from lensflow.shared.config.base import StrictModel

SEGMENT = r"^[A-Za-z0-9_.-]{1,64}$"


class TlsConfig(StrictModel):
    """TLS for MQTT or HTTPS: CA bundle and optional client certificate."""

    ca_file: str | None = Field(None, description="CA bundle; system default when absent.")
    cert_file: str | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: str | None = Field(None, description="Client private key (mutual TLS).")
    insecure: bool = Field(False, description="Skip hostname verification (testing only).")

    @model_validator(mode="after")
    def _cert_with_key(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class MqttConfig(StrictModel):
    """Connection to the MQTT broker."""

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for MQTTS).")
    protocol: Literal["v5", "v311"] = Field(
        "v5", description="MQTT version; v311 for RabbitMQ's MQTT plugin."
    )
    client_id: str | None = Field(
        None, description="Stable client id; derived from site/agent when absent."
    )
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(
        None, description="Broker password; set it from the environment, never in the file."
    )
    tls: TlsConfig | None = Field(None, description="Enable TLS (MQTTS) with these settings.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay (backoff cap).")


class LoggingConfig(StrictModel):
    """Log level and format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="json: one object per line.")
