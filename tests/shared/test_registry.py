"""Plugin resolution: registered keys, dotted paths, and unavailable plugins."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lensflow.shared.classifiers.edge_detection import EdgeDetection
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.errors import PluginError, PluginUnavailableError
from tests.support.plugins import Echo


def test_builtin_plugins_are_discovered_by_package_scan() -> None:
    assert default_registry().resolve("edge_detection") is EdgeDetection


def test_a_key_cannot_be_taken_twice() -> None:
    registry = PluginRegistry()
    registry.register(Echo)

    class OtherEcho(Echo):
        pass

    with pytest.raises(PluginError, match="'echo' is taken by tests.support.plugins.Echo"):
        registry.register(OtherEcho)


def test_replace_takes_a_key_over() -> None:
    # given a registered plugin, when another registers its key with replace=True
    registry = PluginRegistry()
    registry.register(Echo)

    class OtherEcho(Echo):
        pass

    registry.register(OtherEcho, replace=True)
    # then the key resolves to the newcomer (how test fakes stand in for real plugins)
    assert registry.resolve("echo") is OtherEcho


def test_plugin_with_missing_dependency_is_unavailable_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "extra_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "needs_gpu.py").write_text(
        "import lensflow_no_such_runtime\n"
        "from lensflow.shared.classifiers.base import BaseClassifier\n"
    )
    (package / "fine.py").write_text(
        "from lensflow.shared.classifiers.base import BaseClassifier\n"
        "class Fine(BaseClassifier):\n    key = 'fine'\n"
        "    def process(self, image, context):\n        return {}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = PluginRegistry().discover("extra_plugins")
    assert registry.resolve("fine").__name__ == "Fine"
    with pytest.raises(PluginUnavailableError, match="lensflow_no_such_runtime"):
        registry.resolve("needs_gpu")
    sys.modules.pop("extra_plugins", None)


def test_dotted_path_to_a_module_with_a_missing_dependency_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "heavy_plugin.py").write_text("import lensflow_missing_torch\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginUnavailableError, match="missing dependency 'lensflow_missing_torch'"):
        PluginRegistry().resolve("heavy_plugin.Thing")
