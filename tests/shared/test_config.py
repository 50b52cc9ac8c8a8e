"""Config schemas: example files load; every error names its line; secrets from env."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.shared.config import (
    CloudConfig,
    EdgeConfig,
    PipelineConfig,
    apply_env_overrides,
    load_cloud_config,
    load_config,
    load_edge_config,
)
from lensflow.shared.config.yaml_loader import YamlDocument
from lensflow.shared.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("edge.yaml", EdgeConfig),
        ("cloud.yaml", CloudConfig),
        ("pipeline.yaml", PipelineConfig),
    ],
)
def test_example_configs_load(repo_root: Path, name: str, model: type) -> None:
    config = load_config(model, repo_root / "configs" / name)
    assert isinstance(config, model)


def test_unknown_key_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "site: s\nagent_id: a\ndetector: {model: m.xml}\n"
        "cameras:\n  - name: c1\n    source: {type: usb}\n    colour: red\n",
    )
    with pytest.raises(ConfigError) as info:
        load_edge_config(path)
    (issue,) = info.value.issues
    assert issue.location is not None and issue.location.line == 7
    assert issue.field == "cameras.0.colour"
    assert "unknown key" in issue.message


def test_every_error_is_reported_not_only_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "site: 'bad/site'\nagent_id: a\ndetector: {model: m.xml, conf_threshold: 2}\ncameras: []\n",
    )
    with pytest.raises(ConfigError) as info:
        load_edge_config(path)
    lines = sorted(i.location.line for i in info.value.issues if i.location)
    assert lines == [1, 3, 4]


@pytest.mark.parametrize(
    ("text", "loc", "line", "column"),
    [
        # a block mapping value: its key's line, not the line of its first entry
        ("a: 1\nb: 2\nmqtt:\n  host: x\n", ("mqtt",), 3, 1),
        # a key the block lacks: still the line of the block's key
        ("a: 1\nmqtt:\n  host: x\n", ("mqtt", "port"), 2, 1),
        # an empty value: its key's line, just after the colon
        ("a: 1\nempty:\nnext: 2\n", ("empty",), 2, 7),
        # a block list value: its key's line
        ("cameras:\n  - name: c\n", ("cameras",), 1, 1),
        # a scalar on its key's line: the value's column
        ("a: 1\nfps: -1\n", ("fps",), 2, 6),
        # a list item: the item itself (the line of its dash)
        ("cameras:\n  - name: c\n  - name: d\n    fps: 0\n", ("cameras", 1), 3, 5),
        # a key nested in a list item
        ("cameras:\n  - name: c\n    source:\n      type: usb\n", ("cameras", 0, "source"), 3, 5),
    ],
)
def test_a_location_is_the_line_of_its_key(
    text: str, loc: tuple[int | str, ...], line: int, column: int
) -> None:
    where = YamlDocument(text, path="c.yaml").location(loc)

    assert (where.line, where.column) == (line, column)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\npipeline:\n  - name: a\n    class: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(PipelineConfig, path)
    assert str(info.value).startswith(f"{path}:")
    assert "invalid YAML" in str(info.value)


def test_duplicate_key_is_an_error_not_silently_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nname: a\nname: b\npipeline: []\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'name' \(first given on line 2\)"):
        load_config(PipelineConfig, path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # an empty file
        ("", "config is empty"),
        # wrong file version
        (
            "version: 2\npipeline: [{name: a, class: echo}]\n",
            "expected pipeline file version 1, got 2",
        ),
        # bad node name
        ("pipeline: [{name: 'a b', class: echo}]\n", "node name must be"),
    ],
)
def test_pipeline_schema_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(PipelineConfig, write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(PipelineConfig, tmp_path / "nope.yaml")


def test_area_range_is_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "site: s\nagent_id: a\ndetector: {model: m.xml}\ncameras:\n"
        "  - name: c\n    source: {type: usb}\n    filters: {min_area: 50, max_area: 10}\n",
    )
    with pytest.raises(
        ConfigError, match="max_area must be greater than min_area, but got 10.0 <= 50.0"
    ):
        load_edge_config(path)


def test_secrets_come_from_the_environment(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LENSFLOW_EDGE__MQTT__PASSWORD", "s3cret")
    monkeypatch.setenv("LENSFLOW_CLOUD__DATABASE__URL", "postgresql+psycopg://u:p@db/lensflow")
    edge = load_edge_config(repo_root / "configs" / "edge.yaml")
    cloud = load_cloud_config(repo_root / "configs" / "cloud.yaml")
    assert edge.mqtt.password is not None
    assert edge.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(edge)  # secrets never print
    assert cloud.database.url.get_secret_value().startswith("postgresql+psycopg://")


def test_env_overrides_merge_into_nested_sections() -> None:
    environ = {"X__MQTT__PASSWORD": "2", "x__site": "s", "Y__SITE": "3"}
    data = apply_env_overrides(
        {"site": "a", "mqtt": {"host": "h"}}, model=EdgeConfig, prefix="X__", environ=environ
    )
    assert data == {"site": "s", "mqtt": {"host": "h", "password": "2"}}


def test_an_env_override_naming_no_setting_is_refused(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LENSFLOW_EDGE__MQTTT__PASSWORD", "s3cret")  # a typo
    with pytest.raises(ConfigError, match="mqttt"):
        load_edge_config(repo_root / "configs" / "edge.yaml")


def test_discriminated_source_reports_the_bad_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "site: s\nagent_id: a\ndetector: {model: m.xml}\ncameras:\n"
        "  - name: c\n    source: {type: ftp, path: x}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_edge_config(path)
    assert info.value.issues[0].location is not None
    assert info.value.issues[0].location.line == 6
    assert "folder" in info.value.issues[0].message  # names what was expected
