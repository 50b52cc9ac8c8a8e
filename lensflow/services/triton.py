"""A private Triton Inference Server run as a supervised child, for tests and benchmarks.

The server is the ``tritonserver`` 2.51 that the ``nvidia-pytriton`` wheel bundles, with its
Python backend, installed by ``scripts/bootstrap.sh`` into a virtual environment of its own
(``.venv-triton``: that wheel pins numpy < 2, which the rest of lensflow has outgrown). It
serves a model repository written by ``lensflow models triton-repo --backend python``: the
same ONNX files the in-worker runtime loads, run by ONNX Runtime inside Triton's Python
backend, batched by Triton's dynamic batcher. Production runs NVIDIA's ``tritonserver``
container on the repository written with the default ``onnxruntime`` backend instead; the
client side (KServe v2 over gRPC) is the same.

Two things the bundled server needs that PyTriton itself does at run time: the Python
backend's stub for this Python version copied next to the backend, and ``LD_LIBRARY_PATH``
naming the venv interpreter's own ``libpython`` (without it the stub loads the system's
libpython and fails with ``'_thread.RLock' object has no attribute '_recursion_count'``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lensflow.services.process import (
    LOG_TAIL_LINES,
    ManagedProcess,
    ServiceError,
    distinct_free_ports,
    read_log_tail,
)
from lensflow.services.readiness import http_200

logger = logging.getLogger(__name__)

VENV_ENV = "LENSFLOW_TRITON_VENV"
"""Environment variable naming the Triton venv; ``.venv-triton`` of the checkout otherwise."""

_START_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 30.0
_PROBE = """
import json, pathlib, sys, sysconfig
import pytriton
root = pathlib.Path(pytriton.__file__).parent
print(json.dumps({
    "root": str(root),
    "libs": str(root.parent / "nvidia_pytriton.libs"),
    "libpython": sysconfig.get_config_var("LIBDIR") or "",
    "version": f"{sys.version_info[0]}.{sys.version_info[1]}",
}))
"""


class TritonServerError(ServiceError):
    """The private Triton server could not be found, prepared, started or stopped."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the bundled server's parts are in a Triton venv.

    Attributes:
        venv: The virtual environment holding ``nvidia-pytriton`` and ``onnxruntime``.
        binary: The ``tritonserver`` executable.
        backends: The folder of backends (``python``), given as ``--backend-directory``.
        library_path: ``LD_LIBRARY_PATH`` for the server: the wheel's libraries, libpython's.

    """

    venv: Path
    binary: Path
    backends: Path
    library_path: str


def default_venv() -> Path:
    """The Triton venv: ``$LENSFLOW_TRITON_VENV``, else ``.venv-triton`` of the checkout."""
    named = os.environ.get(VENV_ENV)
    if named:
        return Path(named)
    checkout = Path(__file__).resolve().parents[2]
    return checkout / ".venv-triton"


def find_triton(venv: Path | None = None) -> TritonInstall:
    """Locate the bundled server in ``venv`` and put the Python backend's stub in place.

    Raises:
        TritonServerError: The venv or its ``nvidia-pytriton`` is missing (the message says
            how to make it), or the stub for its Python version is not in the wheel.

    """
    venv = default_venv() if venv is None else venv
    python = venv / "bin" / "python"
    if not python.is_file():
        raise TritonServerError(
            f"expected the Triton venv at {venv} (nvidia-pytriton and onnxruntime), found "
            f"no {python}; make it with `scripts/bootstrap.sh all` or set {VENV_ENV}"
        )
    try:
        probe = subprocess.run(  # noqa: S603 - the venv's own interpreter, a fixed script
            [str(python), "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
        )
        found = json.loads(probe.stdout)
    except (subprocess.SubprocessError, OSError, ValueError) as err:
        detail = getattr(err, "stderr", "") or err
        raise TritonServerError(
            f"expected nvidia-pytriton importable in {venv}, but it is not: {detail}"
        ) from err
    root = Path(found["root"]) / "tritonserver"
    backends = root / "backends"
    stub = backends / "python" / "triton_python_backend_stub"
    if not stub.is_file():
        source = root / "python_backend_stubs" / found["version"] / "triton_python_backend_stub"
        if not source.is_file():
            raise TritonServerError(
                f"expected a Python backend stub for Python {found['version']} at {source}"
            )
        shutil.copy2(source, stub)  # what PyTriton does when it starts its own server
    library_path = ":".join(p for p in (found["libs"], found["libpython"]) if p)
    return TritonInstall(
        venv=venv,
        binary=root / "bin" / "tritonserver",
        backends=backends,
        library_path=library_path,
    )


class TritonServer:
    """A ``tritonserver`` child with its own ports, serving one model repository.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. :meth:`restart` keeps
    the ports, so clients reconnect to the same address.

    Args:
        repository: The model repository (``lensflow models triton-repo --backend python``).
        data_dir: Folder for the server's log.
        venv: The Triton venv; :func:`default_venv` when None.

    """

    def __init__(self, repository: Path, *, data_dir: Path, venv: Path | None = None) -> None:
        self.repository = Path(repository).resolve()
        self.data_dir = Path(data_dir).resolve()
        self._venv = venv
        self.http_port, self.grpc_port = distinct_free_ports(2)
        self._process: ManagedProcess | None = None

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint (what ``runtime: triton`` nodes name as url)."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        """The server's process id once started."""
        return None if self._process is None else self._process.pid

    @property
    def is_running(self) -> bool:
        """Whether the child is alive."""
        return self._process is not None and self._process.is_running

    def _managed(self) -> ManagedProcess:
        if self._process is None:
            install = find_triton(self._venv)
            env = dict(os.environ)
            inherited = env.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = ":".join(p for p in (install.library_path, inherited) if p)
            env["PATH"] = f"{install.venv / 'bin'}:{env.get('PATH', '')}"
            command = [
                str(install.binary),
                f"--model-repository={self.repository}",
                f"--backend-directory={install.backends}",
                f"--http-port={self.http_port}",
                f"--grpc-port={self.grpc_port}",
                "--http-address=127.0.0.1",
                "--grpc-address=127.0.0.1",
                "--allow-metrics=false",
                "--exit-timeout-secs=5",
                "--log-verbose=0",
            ]
            self._process = ManagedProcess(
                command,
                name="tritonserver",
                log_file=self.data_dir / "tritonserver.log",
                ready=http_200(f"http://{self.http_url}/v2/health/ready"),
                env=env,
                start_timeout_s=_START_TIMEOUT_S,
                stop_timeout_s=_STOP_TIMEOUT_S,
                parent_death_signal=signal.SIGKILL,
            )
        return self._process

    def start(self) -> None:
        """Start the server and wait until ``/v2/health/ready`` answers 200 (models loaded).

        Raises:
            TritonServerError: The venv is missing, or the server exits or is not ready
                within 90 s (a model that fails to load keeps it unready); holds the log tail.

        """
        if self.is_running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._managed().start()
        except ServiceError as err:
            raise TritonServerError(f"Triton server: {err}") from err
        logger.info("tritonserver ready grpc=%s http=%s", self.grpc_url, self.http_url)

    def stop(self) -> None:
        """Stop with SIGTERM (SIGKILL after 30 s) and wait."""
        if self._process is not None:
            self._process.stop()

    def kill(self) -> None:
        """Kill with SIGKILL: requests in flight get no answer."""
        if self._process is not None:
            self._process.kill()

    def restart(self) -> None:
        """Stop and start again on the same ports."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server's output."""
        return read_log_tail([self.data_dir / "tritonserver.log"], lines)

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()
