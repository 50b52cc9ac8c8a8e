"""A throwaway S3-compatible server (moto's ``moto_server``) as a supervised child, for tests.

:class:`MotoS3Server` runs ``moto_server -H 127.0.0.1 -p <port>`` as a
:class:`~lensflow.services.process.ManagedProcess` on a free loopback port and waits until it
answers HTTP. Everything it stores is in its memory: a stop loses every bucket, a start on the
same port gives an empty server. It speaks the S3 REST API over real HTTP, so boto3 clients,
presigned URLs and connection failures are exercised for real; it checks no signatures
(any credentials are accepted), so it cannot show that a deployment's keys or policies work.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from lensflow.services.process import ManagedProcess, ProcessError, ServiceError, free_port
from lensflow.services.readiness import http_200

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


class MotoError(ServiceError):
    """moto_server could not be found or started."""


def find_moto_server() -> Path:
    """The ``moto_server`` program: beside this interpreter (a venv), or on PATH.

    Raises:
        MotoError: If there is none (``pip install 'moto[server]'``).

    """
    beside = Path(sys.executable).parent / "moto_server"
    if beside.is_file():
        return beside
    found = shutil.which("moto_server")
    if found is None:
        raise MotoError(
            f"expected moto_server beside {sys.executable} or on PATH, got none "
            "(install the test extra: moto[server])"
        )
    return Path(found)


class MotoS3Server:
    """A moto_server child with its own loopback port and log.

    Args:
        folder: Where its log goes (created).
        port: TCP port on 127.0.0.1; a free one when not given. It stays the same across a
            stop and a start, so clients built for :attr:`endpoint` reach it again.

    """

    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        self.folder = folder
        self.port = free_port() if port is None else port
        self._process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        """The server's URL, for ``crop_store: {type: s3, endpoint: ...}``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.is_running

    def start(self) -> None:
        """Start the server and wait until it answers HTTP (no-op if it runs).

        Raises:
            MotoError: moto_server is missing, exits, or does not answer within 30 s (it is
                then killed); the message holds its log tail.

        """
        if self._process is None:
            self._process = ManagedProcess(
                [str(find_moto_server()), "-H", "127.0.0.1", "-p", str(self.port)],
                name="moto_server",
                log_file=self.folder / "moto_server.log",
                ready=http_200(f"{self.endpoint}/moto-api/"),
                start_timeout_s=_START_TIMEOUT_S,
                stop_timeout_s=_STOP_TIMEOUT_S,
            )
        try:
            self._process.start()
        except ProcessError as err:
            raise MotoError(str(err)) from err
        logger.info("moto_server started pid=%s port=%s", self._process.pid, self.port)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); what it stored is gone."""
        if self._process is not None:
            try:
                self._process.stop()
            except ProcessError as err:
                raise MotoError(str(err)) from err

    def __enter__(self) -> MotoS3Server:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()
