"""Schema of the edge agent config (``configs/edge.yaml``)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from lensflow.shared.config.base import StrictModel
from lensflow.shared.config.common import SEGMENT, LoggingConfig, MqttConfig

Point = tuple[float, float]

_DEAD_AFTER = (
    " A source that has failed (missing, unreadable, unreachable...) and given no frame for "
    "this long is dead: `lensflow edge --once` stops waiting for it (it is still retried "
    "with backoff while the agent runs)."
)


class FolderSource(StrictModel):
    """Images from a folder, in name order (optionally looping)."""

    type: Literal["folder"] = "folder"
    path: str = Field(description="Folder of images (jpg, png, bmp, webp).")
    loop: bool = Field(False, description="Start again after the last image.")
    open_timeout_s: float = Field(
        10.0, gt=0, description="How long a missing or empty folder is waited for." + _DEAD_AFTER
    )
    max_image_pixels: int = Field(
        50_000_000,  # lensflow.shared.images.DEFAULT_MAX_PIXELS, as the cloud's ingest
        ge=1,
        description="An image whose header declares more pixels is skipped before decoding "
        "(a decompression bomb), counted as `too_large`.",
    )


class VideoSource(StrictModel):
    """A video file."""

    type: Literal["video"] = "video"
    path: str = Field(description="Video file readable by OpenCV.")
    loop: bool = Field(False, description="Start again at the end.")
    open_timeout_s: float = Field(
        10.0,
        gt=0,
        description="How long a missing or unopenable video is waited for." + _DEAD_AFTER,
    )


class StreamSource(StrictModel):
    """An RTSP or HTTP stream, reconnected with backoff."""

    type: Literal["stream"] = "stream"
    url: str = Field(pattern=r"^(rtsp|rtsps|http|https)://", description="Stream URL.")
    open_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Give up one opening (and a read) after this long." + _DEAD_AFTER,
    )


class UsbSource(StrictModel):
    """A local camera device (V4L2 index)."""

    type: Literal["usb"] = "usb"
    device: int = Field(0, ge=0, description="Device index, as in /dev/videoN.")
    open_timeout_s: float = Field(
        10.0, gt=0, description="How long an absent device is waited for." + _DEAD_AFTER
    )


Source = Annotated[
    FolderSource | VideoSource | StreamSource | UsbSource, Field(discriminator="type")
]


class ClassRule(StrictModel):
    """Keep detections of one class at or above a score."""

    min_score: float = Field(0.25, ge=0, le=1, description="Lowest score kept for this class.")


class Zone(StrictModel):
    """A polygon in frame pixels; an object counts when its box's bottom-centre is inside."""

    name: str = Field(description="Zone name, sent with the crop.")
    points: list[Point] = Field(min_length=3, description="Polygon vertices [[x, y], ...].")


class FilterConfig(StrictModel):
    """Which detections are interesting enough to send."""

    classes: dict[str, ClassRule] = Field(
        default_factory=dict, description="Allow-list with per-class min score; empty: all."
    )
    min_score: float = Field(0.25, ge=0, le=1, description="Default min score.")
    min_area: float = Field(0, ge=0, description="Smallest box area in pixels.")
    max_area: float | None = Field(None, gt=0, description="Largest box area in pixels.")
    zones: list[Zone] = Field(default_factory=list, description="Keep only objects in a zone.")
    masks: list[list[Point]] = Field(
        default_factory=list, description="Polygons where detections are ignored."
    )

    @model_validator(mode="after")
    def _area_range(self) -> FilterConfig:
        if self.max_area is not None and self.max_area <= self.min_area:
            raise ValueError(
                f"max_area must be greater than min_area, but got {self.max_area} <= "
                f"{self.min_area}"
            )
        return self


class MotionConfig(StrictModel):
    """Motion-gated detection: a cheap background model decides when the detector runs.

    The detector runs on frames with motion, while tracks are moving or not yet confirmed,
    and at least every ``check_every_s``; on other frames the tracker carries its objects.
    """

    enabled: bool = Field(
        False, description="Gate the detector on motion; false runs it on every frame."
    )
    threshold: int = Field(
        30, ge=1, le=255, description="Pixel difference from the background that is motion."
    )
    contour_area: int = Field(
        10,
        ge=0,
        description="Smallest motion contour counted, in pixels of the low-resolution frame.",
    )
    frame_height: int = Field(
        100, ge=16, le=1080, description="Height of the low-resolution motion frame, pixels."
    )
    improve_contrast: bool = Field(
        True, description="Stretch the frame's contrast first (helps dim and night scenes)."
    )
    frame_alpha: float = Field(
        0.01,
        gt=0,
        le=1,
        description="How fast the background learns a change (per frame); a stopped object "
        "stops being motion once learnt.",
    )
    lightning_threshold: float = Field(
        0.8,
        ge=0.3,
        le=1.0,
        description="Frame fraction in motion at once (lights, IR switch) that recalibrates "
        "the background instead of counting as motion.",
    )
    masks: list[Annotated[list[Point], Field(min_length=3)]] = Field(
        default_factory=list,
        description="Polygons in frame pixels where motion is ignored (timestamps, trees).",
    )
    check_every_s: float = Field(
        5.0, gt=0, description="Run the detector on the whole frame at least this often."
    )
    track_interval_frames: int = Field(
        1,
        ge=1,
        description="While the detector is wanted only for what is already known to move "
        "(motion within tracked boxes or where motion was when it last ran, tracks still "
        "moving), run it at most every this many frames and let the tracker carry the tracks "
        "in between; motion elsewhere, startup and the periodic check still run it at once. "
        "1 runs it on every such frame.",
    )
    stationary_after_s: float = Field(
        2.0,
        gt=0,
        description="A track whose box stays put this long is stationary: it no longer keeps "
        "the detector running (motion or the periodic check still do).",
    )

    @field_validator("masks")
    @classmethod
    def _points_in_frame(cls, masks: list[list[Point]]) -> list[list[Point]]:
        for index, polygon in enumerate(masks):
            outside = [list(point) for point in polygon if point[0] < 0 or point[1] < 0]
            if outside:
                raise ValueError(
                    f"mask {index} points must be frame pixels [x, y] >= 0, but got {outside}"
                )
        return masks


class CameraConfig(StrictModel):
    """One camera: its source, sampling rate, filters and motion gate."""

    name: str = Field(pattern=SEGMENT, description="Camera id, used in MQTT topics.")
    source: Source = Field(description="Where frames come from.")
    fps: float = Field(5.0, gt=0, le=120, description="Target frames per second to analyse.")
    filters: FilterConfig = Field(default_factory=FilterConfig, description="Detection filters.")
    motion: MotionConfig = Field(
        default_factory=MotionConfig, description="Run the detector only when needed."
    )


class DetectorConfig(StrictModel):
    """The detection model and runtime."""

    backend: Literal["openvino", "onnxruntime", "litert"] = Field(
        "openvino", description="Runtime (litert: TFLite models, as on Coral-class cameras)."
    )
    model: str = Field(
        description="Artifact (.xml or its folder for OpenVINO, .onnx, .pb or .tflite for SSD), "
        "a manifest name that `lensflow edge` resolves to its export of `precision`, or "
        "`sha256:<hex>` of a model registry bundle (downloaded through `registry`)."
    )
    precision: Literal["fp32", "fp16", "int8"] = Field(
        "int8", description="Which export of a manifest model to run."
    )
    device: str = Field("CPU", description="OpenVINO device or ORT provider hint (CPU, CUDA).")
    conf_threshold: float = Field(0.25, ge=0, le=1, description="Detector score threshold.")
    iou_threshold: float = Field(0.45, gt=0, le=1, description="NMS IoU threshold.")


class RegistryConfig(StrictModel):
    """Where the agent downloads model bundles that ``detector.model: sha256:<hex>`` names."""

    url: str = Field(pattern=r"^https?://", description="The cloud API's base URL.")
    key: SecretStr | None = Field(
        None, description="An API key (any role) to download with; set it from the environment."
    )
    cache: str | None = Field(
        None, description="Folder of downloaded bundles; default: `bundles` in the model cache."
    )
    timeout_s: float = Field(30.0, gt=0, description="Connect/read timeout of one request.")
    retry_for_s: float = Field(
        300.0,
        ge=0,
        description="How long an interrupted download keeps resuming (HTTP Range) before the "
        "config is rejected.",
    )


class CropConfig(StrictModel):
    """How crops are cut, selected and encoded."""

    mode: Literal["best_per_track", "every_detection"] = Field(
        "best_per_track", description="One best crop per track, or every detection."
    )
    resend_after_s: float = Field(30.0, gt=0, description="Long tracks: send a crop this often.")
    track_lost_after_s: float = Field(2.0, gt=0, description="A track ends after this silence.")
    padding: float = Field(0.1, ge=0, le=1, description="Padding around the box, box fraction.")
    max_side: int = Field(512, ge=32, le=4096, description="Resize crops to this longest side.")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality.")
    budget_bytes_per_s: float | None = Field(
        None, gt=0, description="Per-camera upload budget (token bucket); none: unlimited."
    )
    budget_burst_bytes: float = Field(2_000_000, gt=0, description="Token bucket size.")


class SpoolConfig(StrictModel):
    """The on-disk queue that holds crops until the broker acknowledges them."""

    path: str = Field("var/edge-spool.sqlite3", description="SQLite file of the spool.")
    max_bytes: int = Field(1_000_000_000, ge=1_000_000, description="Drop oldest beyond this.")
    inflight: int = Field(20, ge=1, le=1000, description="Unacknowledged publishes at a time.")
    receipts: bool = Field(
        True,
        description="Keep each crop until the cloud's receipt says it is committed (end to "
        "end); false keeps it only until the broker's PUBACK (for a cloud that sends none).",
    )
    receipt_timeout_s: float = Field(
        30.0, gt=0, description="Send a published crop again when no receipt came this long."
    )
    max_sends: int = Field(
        20, ge=1, description="Give up on a crop sent this often without a receipt (counted)."
    )


class EdgeConfig(StrictModel):
    """The whole edge agent config."""

    site: str = Field(pattern=SEGMENT, description="Site id, used in MQTT topics.")
    agent_id: str = Field(pattern=SEGMENT, description="Agent id, stable across restarts.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    detector: DetectorConfig = Field(description="Detection model and runtime.")
    cameras: list[CameraConfig] = Field(min_length=1, description="Cameras of this agent.")
    crops: CropConfig = Field(default_factory=CropConfig, description="Crop selection.")
    spool: SpoolConfig = Field(default_factory=SpoolConfig, description="On-disk spool.")
    heartbeat_s: float = Field(10.0, gt=0, description="Status heartbeat period.")
    metrics_port: int | None = Field(9108, ge=0, le=65535, description="Prometheus port.")
    metrics_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address /metrics binds to; 0.0.0.0 for a scraper outside a container.",
    )
    registry: RegistryConfig | None = Field(
        None, description="The model registry (local only: its key stays on the device)."
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    capture_native_stderr: bool = Field(
        True,
        description="While the agent runs, what OpenCV and FFmpeg write to stderr (fd 2) "
        "becomes log lines (logger lensflow.edge.native, naming the camera); false leaves "
        "their raw lines on stderr. Read at start.",
    )

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        names = [camera.name for camera in cameras]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"camera names must be unique, but got duplicates {duplicates}")
        return cameras


LOCAL_ONLY = ("site", "agent_id", "mqtt", "spool", "metrics_port", "metrics_host", "registry")
"""Sections that stay in each agent's local file: a pushed config may not change them."""


def config_hash(config: EdgeConfig) -> str:
    """``sha256:<hex>`` of the config's canonical JSON, without the local-only sections.

    The same hash names a config in the cloud's assignments, the agent's ack and heartbeats,
    and every crop's provenance; one config version therefore fits many agents.
    """
    data = config.model_dump(mode="json", exclude=set(LOCAL_ONLY))
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def payload_hash(payload: bytes) -> str:
    """``sha256:<hex>`` of a pushed config's bytes: what an agent acks a config it rejects by."""
    return "sha256:" + hashlib.sha256(payload).hexdigest()
