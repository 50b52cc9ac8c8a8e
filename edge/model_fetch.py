"""Model bundles from the registry: download (resumable), verify, unpack into the model cache.

An edge config may name its detector ``sha256:<hex>``: a bundle in the cloud's model registry
(:mod:`lensflow.shared.model_bundle`). :class:`BundleFetcher` keeps bundles in a cache
folder, one unpacked folder per sha256. A folder already there is verified (every file
against its card) and used without asking the API, so a cached model works after a restart
with the API down. Otherwise the bundle is downloaded to ``<sha256>.part``; an interrupted
download (an API restart, a dropped connection) resumes from the bytes already there with an
HTTP ``Range`` request, with backoff, for up to ``registry.retry_for_s``. The whole file must
hash to the sha256 it was asked for, then it is unpacked atomically. The standard library's
HTTP client is enough: the edge needs no HTTP dependency for this.
"""

from __future__ import annotations

import http.client
import logging
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lensflow.shared.config.edge import EdgeConfig, RegistryConfig
from lensflow.shared.errors import ModelError
from lensflow.shared.model_bundle import (
    BundleCard,
    BundleError,
    sha256_file,
    unpack_bundle,
    verify_folder,
)
from lensflow.shared.paths import model_cache_dir

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
_PERMANENT = {400, 401, 403, 404, 410}
"""Answers a retry cannot change: the config is rejected at once."""


class FetchError(ModelError):
    """A bundle could not be downloaded (the registry refused it, or kept failing)."""


@dataclass(frozen=True)
class FetchedBundle:
    """An unpacked, verified bundle: its folder, card and the model file to load."""

    sha256: str
    folder: Path
    card: BundleCard

    @property
    def artifact(self) -> Path:
        """The model file the card names."""
        return self.folder / self.card.artifact


class BundleFetcher:
    """Bundles by sha256: from the cache folder, else downloaded from the registry."""

    def __init__(
        self,
        registry: RegistryConfig | None,
        *,
        cache: Path,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        """Keep bundles in ``cache``; download from ``registry`` (None: cached ones only)."""
        self.registry = registry
        self.cache = cache
        self._sleep = sleep
        self._lock = threading.Lock()  # one download at a time
        self.resumed = 0
        """Downloads continued with a Range request after an interruption (for tests, bench)."""

    def cached(self, sha256: str) -> bool:
        """Whether bundle ``sha256`` is unpacked in the cache (no download needed)."""
        return (self.cache / sha256).is_dir()

    def fetch(self, sha256: str) -> FetchedBundle:
        """The verified, unpacked bundle ``sha256``, downloaded first if not cached.

        Raises:
            FetchError: No registry configured, the registry refused, or it kept failing.
            BundleError: The download does not hash to ``sha256`` or is not a valid bundle.

        """
        with self._lock:
            folder = self.cache / sha256
            if folder.is_dir():
                try:
                    return FetchedBundle(sha256, folder, verify_folder(folder))
                except BundleError as err:
                    logger.warning(
                        "bundle %s: cached copy is damaged (%s); fetching again", sha256, err
                    )
                    shutil.rmtree(folder, ignore_errors=True)
            part = self._download(sha256)
            got = sha256_file(part)
            if got != sha256:
                part.unlink(missing_ok=True)
                raise BundleError(f"expected a bundle with sha256 {sha256}, downloaded {got}")
            card = unpack_bundle(part, folder)
            part.unlink(missing_ok=True)
            logger.info("bundle %s (%s): downloaded and verified", sha256, card.name)
            return FetchedBundle(sha256, folder, card)

    def _download(self, sha256: str) -> Path:
        """Download to ``<sha256>.part`` (resuming what is there), retrying transient errors."""
        if self.registry is None:
            raise FetchError(
                f"expected a `registry` section in the local config to download bundle "
                f"sha256:{sha256}, got none (and no cached copy)"
            )
        self.cache.mkdir(parents=True, exist_ok=True)
        part = self.cache / f"{sha256}.part"
        deadline = time.monotonic() + self.registry.retry_for_s
        attempt = 0
        while True:
            try:
                self._get(sha256, part)
                return part
            except FetchError:
                raise
            except (OSError, http.client.HTTPException) as err:  # URLError is an OSError
                if time.monotonic() >= deadline:
                    raise FetchError(
                        f"expected bundle sha256:{sha256} from {self.registry.url}, got "
                        f"{err} for {self.registry.retry_for_s:g} s"
                    ) from err
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                logger.info(
                    "bundle %s: download interrupted (%s); resuming in %.1f s", sha256, err, delay
                )
                attempt += 1
                self._sleep(delay)

    def _get(self, sha256: str, part: Path) -> None:
        """One request: the rest of the bundle after the bytes ``part`` already has."""
        assert self.registry is not None
        offset = part.stat().st_size if part.exists() else 0
        url = f"{self.registry.url.rstrip('/')}/v1/models/{sha256}/bundle"
        request = urllib.request.Request(url)  # noqa: S310 - the URL's scheme is validated
        if self.registry.key is not None:
            request.add_header("Authorization", f"Bearer {self.registry.key.get_secret_value()}")
        if offset:
            request.add_header("Range", f"bytes={offset}-")
            request.add_header("If-Range", f'"{sha256}"')
        try:
            answer = urllib.request.urlopen(request, timeout=self.registry.timeout_s)  # noqa: S310
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:  # nothing after what we have: it is complete
                return
            if err.code in _PERMANENT:
                raise FetchError(
                    f"expected bundle sha256:{sha256} from the registry, got HTTP {err.code}: "
                    f"{err.read(500).decode('utf-8', 'replace')}"
                ) from err
            raise
        with answer:
            resume = answer.status == 206
            if offset and resume:
                self.resumed += 1
                logger.info("bundle %s: resuming at byte %d", sha256, offset)
            with part.open("ab" if resume else "wb") as out:
                shutil.copyfileobj(answer, out, _CHUNK)


def default_fetcher(config: EdgeConfig) -> BundleFetcher:
    """The fetcher of the local config's ``registry`` (cache: ``bundles`` in the model cache)."""
    registry = config.registry
    cache = registry.cache if registry is not None and registry.cache else None
    return BundleFetcher(registry, cache=Path(cache) if cache else model_cache_dir() / "bundles")
