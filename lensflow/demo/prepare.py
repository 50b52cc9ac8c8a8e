"""What the demo needs before anything runs: folders, inputs, models and the configs it runs.

Everything of one run lives under ``<workdir>/run`` (database, crops, spool, broker, index,
logs, the rendered configs) and is wiped when the next run starts; the generated inputs live
under ``<workdir>/inputs``. Models go to the project's model cache (``var/models`` or
``$LENSFLOW_MODEL_CACHE``), so the second run reuses what the first one fetched and exported.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lensflow.shared.config.cloud import CloudConfig
from lensflow.shared.config.edge import EdgeConfig
from lensflow.shared.errors import LensflowError
from lensflow.shared.paths import default_manifest, shipped_config

M = TypeVar("M", bound=BaseModel)

DEMO_CONFIGS = "demo"
"""The demo's configs: this folder under the shipped ``configs/``."""
"""The demo's config templates (edge.yaml, cloud.yaml, pipeline.yaml), from the repo root."""
DEFAULT_DETECTOR = "ssd-mobilenet-v2-coco"
EMBEDDING_MODEL = "efficientnet-lite0"
PHOTOS_CAMERA = "photos"
VIDEO_CAMERA = "video"


class DemoError(LensflowError):
    """The demo cannot be set up, a service failed, or the run did not complete."""


@dataclass(frozen=True)
class DemoOptions:
    """How one demo run is set up.

    Attributes:
        workdir: Folder of the run's state and generated inputs.
        once: Exit when everything published has been processed (else run until stopped).
        max_images: Photos for the ``photos`` camera (the sample photos, then varied views).
        frames: Frames of the generated ``video`` clip.
        detector: Manifest name (or artifact path) of the edge detector.
        pipeline: The pipeline the worker runs.
        config_dir: Folder of the edge.yaml and cloud.yaml templates.
        manifest: The model manifest.
        timeout_s: Longest wait for the cloud to store what the edge sent.
        api_port: Port of the API; a free one when 0.
        json_out: Where to write the summary as JSON too (before serving).
        teach: After the run, teach the pipeline a new node through the API (see
            :mod:`lensflow.demo.teach`).

    """

    workdir: Path = Path("var/demo")
    once: bool = False
    max_images: int = 8
    frames: int = 60
    detector: str = DEFAULT_DETECTOR
    pipeline: Path = field(default_factory=lambda: shipped_config(f"{DEMO_CONFIGS}/pipeline.yaml"))
    config_dir: Path = field(
        default_factory=lambda: shipped_config(f"{DEMO_CONFIGS}/edge.yaml").parent
    )
    manifest: Path = field(default_factory=default_manifest)
    timeout_s: float = 300.0
    api_port: int = 0
    json_out: Path | None = None
    teach: bool = False


@dataclass(frozen=True)
class Layout:
    """The paths of one run under the work folder (all absolute)."""

    workdir: Path

    @property
    def inputs(self) -> Path:
        """Generated inputs: photos and the clip."""
        return self.workdir / "inputs"

    @property
    def photos(self) -> Path:
        """The ``photos`` camera's folder."""
        return self.inputs / "photos"

    @property
    def video(self) -> Path:
        """The ``video`` camera's clip."""
        return self.inputs / "street.mp4"

    @property
    def run(self) -> Path:
        """This run's state, wiped at the start of the next run."""
        return self.workdir / "run"

    @property
    def logs(self) -> Path:
        """One log file per child process."""
        return self.run / "logs"

    @property
    def pid_file(self) -> Path:
        """Holds the process id of the demo using this work folder."""
        return self.workdir / "demo.pid"

    def fresh(self) -> None:
        """Claim the work folder, remove the previous run's state and create the folders.

        Raises:
            DemoError: Another demo that is still running uses this work folder.

        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        other = _running_pid(self.pid_file)
        if other is not None and other != os.getpid():
            raise DemoError(
                f"expected {self.workdir} to be free, but demo pid {other} is using it: stop it "
                "(Ctrl+C) or pass another --workdir"
            )
        self.pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
        if self.run.exists():
            shutil.rmtree(self.run)
        for folder in (self.logs, self.photos):
            folder.mkdir(parents=True, exist_ok=True)

    def release(self) -> None:
        """Give the work folder up (the run's state stays for inspection)."""
        if _running_pid(self.pid_file) == os.getpid():
            self.pid_file.unlink(missing_ok=True)


def _running_pid(path: Path) -> int | None:
    """The pid in ``path`` if that process is alive, else None."""
    try:
        pid = int(path.read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@dataclass
class Ports:
    """The loopback ports of this run."""

    broker: int
    api: int
    edge_metrics: int
    worker_metrics: int


def make_inputs(layout: Layout, *, max_images: int, frames: int, manifest: Path) -> tuple[int, int]:
    """Write the photos (real photos, then varied views of them) and the clip.

    The real photos are the ultralytics wheel's (bus.jpg, zidane.jpg) and darknet's from
    Debian's package (a dog, a bicycle and a pickup truck; people, horses, kites...), fetched
    by the manifest's ``samples:``; the clip pans over the bus, the dog's street and Zidane.

    Returns:
        The number of photos and of video frames written.

    Raises:
        LensflowError: A sample photo cannot be fetched.

    """
    from lensflow.edge.sample_video import make_sample_video
    from lensflow.models.export.calibration import make_calibration_set
    from lensflow.models.export.samples import fetch_samples
    from lensflow.shared.images import sample_image_paths

    for old in layout.photos.iterdir():
        old.unlink()
    bus, zidane = sample_image_paths()
    darknet = fetch_samples(manifest=manifest)
    real = [bus, *darknet, zidane]
    photos = real[:max_images]
    extra = max_images - len(photos)
    views = layout.inputs / "views"
    if extra > 0:
        photos += make_calibration_set(real, views, count=extra)
    for index, path in enumerate(photos):
        shutil.copyfile(path, layout.photos / f"{index:03d}_{path.name}")
    shutil.rmtree(views, ignore_errors=True)
    street = [bus, *(p for p in darknet if p.stem == "dog"), zidane]
    make_sample_video(layout.video, frames=frames, photos=street)
    return len(photos), frames


def prepare_models(options: DemoOptions, log: Callable[[str], object]) -> tuple[Path, Path]:
    """Fetch and export the edge detector and the EfficientNet-Lite0 classifier (first run).

    Returns:
        The detector artifact and the classifier's ONNX export (logits and features).

    Raises:
        LensflowError: A model cannot be fetched (offline, hash mismatch) or exported.

    """
    from lensflow.models.export.artifacts import artifact_for, classifier_artifact_for

    template = _read_yaml(options.config_dir / "edge.yaml")
    detector = template.get("detector", {})
    backend = detector.get("backend", "openvino")
    precision = detector.get("precision", "int8")
    artifact = artifact_for(
        options.detector,
        backend=backend,
        precision=precision,
        manifest=options.manifest,
        log=log,
    )
    classifier = classifier_artifact_for(
        EMBEDDING_MODEL, manifest=options.manifest, log=log, features=True
    )
    return artifact.resolve(), classifier.resolve()


@dataclass
class RunConfigs:
    """The configs rendered for this run and where they were written."""

    edge: EdgeConfig
    cloud: CloudConfig
    edge_file: Path
    cloud_file: Path


def render_configs(
    options: DemoOptions, layout: Layout, ports: Ports, *, detector: Path
) -> RunConfigs:
    """Fill the templates with this run's ports, paths and detector; validate; write them.

    Raises:
        DemoError: A template is invalid (with the file and what is wrong).

    """
    edge = _read_yaml(options.config_dir / "edge.yaml")
    edge["mqtt"] = {**edge.get("mqtt", {}), "host": "127.0.0.1", "port": ports.broker}
    edge["detector"] = {**edge.get("detector", {}), "model": str(detector)}
    edge["metrics_port"] = ports.edge_metrics
    edge["spool"] = {**edge.get("spool", {}), "path": str(layout.run / "edge-spool.sqlite3")}
    sources = {
        PHOTOS_CAMERA: {"type": "folder", "path": str(layout.photos), "loop": False},
        VIDEO_CAMERA: {"type": "video", "path": str(layout.video), "loop": False},
    }
    for camera in edge.get("cameras", []):
        if camera.get("name") in sources:
            camera["source"] = sources[camera["name"]]
    cloud = _read_yaml(options.config_dir / "cloud.yaml")
    mqtt = {"host": "127.0.0.1", "port": ports.broker, "protocol": "v5"}
    cloud["pipeline"] = str(options.pipeline.resolve())
    cloud["database"] = {"url": f"sqlite:///{layout.run / 'lensflow.sqlite3'}"}
    cloud["crop_store"] = str(layout.run / "crops")
    cloud["intake"] = {**cloud.get("intake", {}), "mqtt": mqtt}
    cloud["api"] = {**cloud.get("api", {}), "host": "127.0.0.1", "port": ports.api}
    if cloud.get("control") is not None:
        cloud["control"] = {**cloud["control"], "mqtt": mqtt}
    search = cloud.get("search")
    if search is not None and search.get("index", {}).get("type") in {"exact", "faiss"}:
        search["index"] = {**search["index"], "path": str(layout.run / "search-index")}
    edge_file, cloud_file = layout.run / "edge.yaml", layout.run / "cloud.yaml"
    edge_cfg = _validate(EdgeConfig, edge, options.config_dir / "edge.yaml")
    cloud_cfg = _validate(CloudConfig, cloud, options.config_dir / "cloud.yaml")
    edge_file.write_text(yaml.safe_dump(edge, sort_keys=False), encoding="utf-8")
    cloud_file.write_text(yaml.safe_dump(cloud, sort_keys=False), encoding="utf-8")
    return RunConfigs(edge=edge_cfg, cloud=cloud_cfg, edge_file=edge_file, cloud_file=cloud_file)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise DemoError(f"cannot read the demo config template {path}: {err}") from err
    if not isinstance(data, dict):
        raise DemoError(f"expected a mapping in {path}, got {type(data).__name__}")
    return data


def _validate(model: type[M], data: dict[str, Any], path: Path) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise DemoError(
            f"expected {path} to make a valid {model.__name__} once the demo's ports and paths "
            f"are filled in, but got: {err}"
        ) from err
