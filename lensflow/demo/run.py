"""``lensflow demo``: the whole system on one machine, from a fresh clone, in one command.

Order: models (fetched and exported on first use) and inputs, then a private mosquitto, the
cloud worker (waits until its MQTT session is subscribed, so no crop is published before
anyone listens), the API (waits for ``/readyz``), an admin API key, and last the edge agent.
The run is watched until the database holds every crop the edge sent (or a timeout says what
is stuck); then the summary is printed. Children are stopped in the reverse order — the edge
first, so it drains its spool while the broker and the worker still run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from lensflow.demo.monitor import ApiClient, EdgeLog, Monitor, Progress
from lensflow.demo.prepare import (
    DemoError,
    DemoOptions,
    Layout,
    Ports,
    make_inputs,
    prepare_models,
    render_configs,
)
from lensflow.demo.services import ChildProcess, child_env, http_get, metric, scrape, wait_until
from lensflow.demo.summary import Summary, build_summary, render, render_teach
from lensflow.demo.teach import (
    NODE,
    TeachSummary,
    label_stored_crops,
    live_results,
    replay,
    summarise,
    teach_edge_config,
    wait_for_swap,
)
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.services.process import free_port

WORKER_READY_S = 180.0  # loading the pipeline (and warming it up) on a busy machine
API_READY_S = 60.0
EDGE_READY_S = 120.0
POLL_S = 0.5


class Stack:
    """The running services, stopped in reverse order of start."""

    def __init__(self) -> None:
        self.broker: MosquittoBroker | None = None
        self.children: list[ChildProcess] = []

    def check_alive(self) -> None:
        """Raise when a child exited or the broker died."""
        for child in self.children:
            child.check_alive()
        if self.broker is not None and not self.broker.is_running:
            raise DemoError(f"the broker exited; its log ends with:\n{self.broker.log_tail()}")

    def stop(self) -> None:
        """Stop every child (the last started first), then the broker."""
        for child in reversed(self.children):
            child.stop()
        if self.broker is not None:
            self.broker.stop()


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl+C (KeyboardInterrupt), but told apart by the CLI."""


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt and SIGTERM :class:`Terminated`; old handlers come back.

    SIGINT is set explicitly: a process started in the background by a non-interactive shell
    (CI, ``nohup``, ``cmd &``) inherits SIGINT ignored, and an explicit ``kill -INT`` must
    still stop the demo and its children.
    """

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        raise Terminated

    old_term = signal.signal(signal.SIGTERM, on_term)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while the children are being stopped (bounded by timeouts)."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class Demo:
    """One demo run; :meth:`run` returns the summary (or raises KeyboardInterrupt)."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.layout = Layout(options.workdir.resolve())
        self.stack = Stack()
        self.cwd = Path.cwd()
        self.env = child_env()
        self.summary: Summary | None = None

    def run(self) -> Summary:
        """Set up, start everything, wait until processed, summarise; serve unless ``once``."""
        with signals_as_interrupt():
            try:
                self.summary = self._run()
                if self.options.teach and self.summary.complete:
                    self.summary.teach = self._teach()
                    render_teach(self.summary.teach, self.console)
                if self.options.json_out is not None:
                    text = json.dumps(self.summary.to_json(), indent=2) + "\n"
                    self.options.json_out.write_text(text, encoding="utf-8")
                if not self.options.once:
                    self._serve()
                return self.summary
            finally:
                with signals_ignored():
                    self.console.log("stopping: edge, API, worker, broker ...")
                    self.stack.stop()
                    self.layout.release()
                    self.console.log("stopped; no child process left running")

    def _log(self, message: str) -> None:
        self.console.log(message, markup=False, highlight=False)

    def _run(self) -> Summary:
        options, layout = self.options, self.layout
        layout.fresh()
        with self.console.status("models: fetching and exporting on first use ..."):
            detector, classifier = prepare_models(options, log=self._log)
        self._log(f"models: detector {detector}")
        self._log(f"models: embeddings/vehicle type {classifier}")
        photos, frames = make_inputs(
            layout, max_images=options.max_images, frames=options.frames, manifest=options.manifest
        )
        self._log(f"inputs: {photos} photos in {layout.photos}, {frames} frames in {layout.video}")
        ports = Ports(
            broker=free_port(),
            api=options.api_port or free_port(),
            edge_metrics=free_port(),
            worker_metrics=free_port(),
        )
        configs = render_configs(options, layout, ports, detector=detector)
        since = datetime.now(UTC)
        self.stack.broker = MosquittoBroker(layout.run / "broker", port=ports.broker)
        self.stack.broker.start()
        self._log(f"broker: mosquitto on 127.0.0.1:{ports.broker}")
        worker = self._child(
            "worker",
            [
                *("cloud", "worker", "--config", str(configs.cloud_file)),
                *("--metrics-port", str(ports.worker_metrics)),
            ],
        )
        with self.console.status("worker: loading the pipeline ..."):
            wait_until(
                lambda: _intake_connected(ports.worker_metrics),
                timeout_s=WORKER_READY_S,
                what="the cloud worker to subscribe to the broker",
                alive=self.stack.check_alive,
            )
        self._log(f"worker: subscribed (pid {worker.pid})")
        base_url = f"http://127.0.0.1:{ports.api}"
        self._child("api", ["cloud", "api", "--config", str(configs.cloud_file)])
        with self.console.status("api: starting ..."):
            wait_until(
                lambda: http_get(f"{base_url}/readyz") is not None,
                timeout_s=API_READY_S,
                what=f"the API to answer {base_url}/readyz",
                alive=self.stack.check_alive,
            )
        key = self._create_key(configs.cloud_file)
        self._log(f"api: {base_url} (OpenAPI docs at {base_url}/docs)")
        self._child(
            "edge",
            ["edge", "--config", str(configs.edge_file), "--manifest", str(options.manifest)],
        )
        api = ApiClient(base_url, key)
        self.api, self.configs = api, configs
        monitor = Monitor(
            cameras=[camera.name for camera in configs.edge.cameras],
            edge_metrics_port=ports.edge_metrics,
            worker_metrics_port=ports.worker_metrics,
            edge_log=EdgeLog(layout.logs / "edge.log"),
            api=api,
            since=since,
        )
        progress, message = self._watch(monitor)
        summary = build_summary(
            progress,
            api,
            complete=progress.done,
            logs=str(layout.run),
            message=message,
        )
        render(summary, self.console)
        return summary

    def _teach(self) -> TeachSummary:
        """The loop back (:mod:`lensflow.demo.teach`): label, train, replay, activate, send."""
        api, options, layout = self.api, self.options, self.layout
        with self.console.status("teach: a scripted operator labels crops through the API ..."):
            labels = label_stored_crops(api, api.all_results())
        self._log(f"teach: {sum(labels.values())} crops labelled {NODE} ({dict(labels)})")
        with self.console.status("teach: training a head on the embedding node ..."):
            head = api.post("/v1/heads", {"node": NODE, "embedding": "embedding"})
        accuracy = head["card"]["heldout"]["accuracy"]
        candidate = head["candidate"]
        self._log(
            f"teach: head {head['sha256'][:12]} passed the gate, held-out accuracy "
            f"{accuracy:.2f}; candidate pipeline version {candidate['id']}"
        )
        with self.console.status("teach: replaying the candidate over the stored crops ..."):
            report = replay(api, candidate["id"])
        self._log(
            f"teach: replay of {report['crops']} crops: {report['nodes'][NODE]['newly_run']} "
            f"newly labelled {NODE}"
        )
        api.post(f"/v1/pipelines/{candidate['id']}/activate")
        with self.console.status("teach: waiting for the worker to swap versions ..."):
            wait_for_swap(api, candidate["sha256"])
        self._log(f"teach: the worker runs version {candidate['id']}; sending new crops")
        config = teach_edge_config(
            self.configs.edge_file, metrics_port=free_port(), folder=layout.run
        )
        self._child(
            "edge-taught", ["edge", "--config", str(config), "--manifest", str(options.manifest)]
        )
        with self.console.status("teach: new crops on their way through the new version ..."):
            live = live_results(
                api, EdgeLog(layout.logs / "edge-taught.log"), alive=self.stack.check_alive
            )
        return summarise(labels, head, report, live)

    def _child(self, name: str, args: list[str]) -> ChildProcess:
        child = ChildProcess(
            name, args, log_file=self.layout.logs / f"{name}.log", cwd=self.cwd, env=self.env
        )
        self.stack.children.append(child)
        child.start()
        return child

    def _create_key(self, cloud_file: Path) -> str:
        """An admin key made with the real ``lensflow cloud keys create`` command."""
        name = f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        args = ["cloud", "keys", "create", "--role", "admin", "--name", name]
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "lensflow", *args, "--config", str(cloud_file)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise DemoError(
                f"expected `lensflow {' '.join(args)}` to print a key, but it exited with "
                f"code {done.returncode}: {done.stderr.strip()[-500:]}"
            )
        self._log(f"api: admin key {name!r} created")
        return lines[-1].strip()

    def _watch(self, monitor: Monitor) -> tuple[Progress, str]:
        """Show progress until everything sent is stored, or the timeout; say what is stuck."""
        deadline = time.monotonic() + self.options.timeout_s
        with Live(console=self.console, refresh_per_second=4, transient=False) as live:
            while True:
                self.stack.check_alive()
                progress = monitor.poll()
                live.update(_progress_view(progress))
                if progress.done or time.monotonic() > deadline:
                    break
                time.sleep(POLL_S)
        self.console.print()
        return progress, "" if progress.done else self._stuck(progress)

    def _stuck(self, progress: Progress) -> str:
        waiting = [name for name, c in progress.cameras.items() if not c.finished]
        if waiting:
            where = f"the edge has not finished cameras {waiting} (see edge.log)"
        elif progress.spooled or progress.published < progress.sent:
            where = (
                f"the edge still holds {progress.spooled} crops in its spool, "
                f"{progress.published} of {progress.sent} acknowledged by the broker (edge.log)"
            )
        else:
            where = (
                f"the worker stored {progress.stored} and dead-lettered "
                f"{progress.dead_letters} of the {progress.sent} crops sent (see worker.log)"
            )
        return (
            f"stuck: not everything was processed within {self.options.timeout_s:.0f} s: "
            f"{where}; logs in {self.layout.logs}"
        )

    def _serve(self) -> None:
        """Keep everything running until Ctrl+C or SIGTERM."""
        self.console.print("[bold]running; press Ctrl+C to stop everything")
        try:
            while True:
                self.stack.check_alive()
                time.sleep(1.0)
        except KeyboardInterrupt:
            return  # the normal end of a demo that was left running


def _intake_connected(port: int) -> bool:
    samples = scrape(port)
    return samples is not None and metric(samples, "lensflow_worker_intake_connects_total") >= 1


def _progress_view(progress: Progress) -> Group:
    table = Table(title="progress", title_justify="left")
    for column in ("camera", "source", "frames", "detections", "crops sent", "stored"):
        table.add_column(column, justify="left" if column in {"camera", "source"} else "right")
    for name, c in progress.cameras.items():
        state = "done" if c.finished else "running"
        table.add_row(
            name, state, str(c.frames), str(c.detections), str(c.crops_sent), str(c.crops_stored)
        )
    line = Table.grid()
    line.add_row(
        f"spool {progress.spooled} · acknowledged by broker {progress.published} · "
        f"processed by worker {progress.processed} · dead letters {progress.dead_letters}"
    )
    return Group(table, line)


def run_demo(options: DemoOptions, console: Console | None = None) -> Summary:
    """Run the demo (see the module docstring); returns its summary.

    Raises:
        DemoError: Something could not start, a service died, or the models are missing.
        LensflowError: A model cannot be fetched or exported.
        KeyboardInterrupt: Ctrl+C, or :class:`Terminated` for SIGTERM (everything was stopped
            first).

    """
    return Demo(options, console or Console()).run()
