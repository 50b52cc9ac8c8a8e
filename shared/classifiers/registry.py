"""Resolve classifier plugins by registered key, entry point or dotted path.

Discovery, not a hand-kept list: every module of this package that defines a
:class:`~lensflow.shared.classifiers.base.BaseClassifier` subclass with a ``key`` is registered
under
that key, and so is each ``lensflow.classifiers`` entry point of an installed package. A
plugin whose module cannot be imported because an optional dependency is missing (OpenVINO,
torch, transformers) is recorded as *unavailable* with the reason; resolving it raises
:class:`~lensflow.shared.errors.PluginUnavailableError` with that reason instead of crashing at
import.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from lensflow.shared.classifiers.base import BaseClassifier
from lensflow.shared.classifiers.head_store import HeadStore
from lensflow.shared.classifiers.model_store import ModelStore
from lensflow.shared.errors import PluginError, PluginUnavailableError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lensflow.classifiers"
_NOT_PLUGINS = {"base", "registry", "model_store", "head_store", "head_model"}


@dataclass
class PluginRegistry:
    """Maps type keys to plugin classes, remembering why unavailable plugins are unavailable.

    It also carries the :class:`~lensflow.shared.classifiers.model_store.ModelStore` that the
    plugins' manifest model names resolve through, and the
    :class:`~lensflow.shared.classifiers.head_store.HeadStore` trained heads load from (None:
    they are not looked up).
    """

    plugins: dict[str, type[BaseClassifier]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    models: ModelStore | None = None
    heads: HeadStore | None = None

    def with_models(self, models: ModelStore | None) -> PluginRegistry:
        """A copy of this registry whose plugins resolve model names through ``models``."""
        return PluginRegistry(dict(self.plugins), dict(self.unavailable), models, self.heads)

    def with_heads(self, heads: HeadStore | None) -> PluginRegistry:
        """A copy of this registry whose ``embedding_head`` nodes load heads from ``heads``."""
        return PluginRegistry(dict(self.plugins), dict(self.unavailable), self.models, heads)

    def register(
        self, plugin: type[BaseClassifier], *, key: str | None = None, replace: bool = False
    ) -> None:
        """Register ``plugin`` under ``key`` (default: its ``key`` attribute).

        Args:
            plugin: the plugin class.
            key: the key to register it under; its ``key`` attribute when None.
            replace: take the key over from a plugin already registered under it (extra
                plugin modules named on the command line, and test fakes, override built-ins).

        Raises:
            PluginError: the class is not a plugin, has no key, or the key is taken (and
                ``replace`` is false).

        """
        if not (inspect.isclass(plugin) and issubclass(plugin, BaseClassifier)):
            raise PluginError(f"expected a BaseClassifier subclass, got {plugin!r}")
        name = key or plugin.key
        if not name:
            raise PluginError(f"plugin {plugin.__qualname__} has no key")
        existing = self.plugins.get(name)
        if existing is not None and existing is not plugin:
            taken_by = f"{existing.__module__}.{existing.__qualname__}"
            if not replace:
                raise PluginError(f"plugin key {name!r} is taken by {taken_by}")
            logger.info("classifier plugin %s: %s replaces %s", name, plugin.__qualname__, taken_by)
        self.plugins[name] = plugin
        self.unavailable.pop(name, None)

    def resolve(self, spec: str) -> type[BaseClassifier]:
        """Return the plugin class for a registered key or a dotted ``module.Class`` path.

        Raises:
            PluginUnavailableError: the plugin exists but a dependency is missing.
            PluginError: no plugin of that name.

        """
        if spec in self.plugins:
            return self.plugins[spec]
        if spec in self.unavailable:
            raise PluginUnavailableError(
                f"plugin {spec!r} is unavailable: {self.unavailable[spec]}"
            )
        if "." in spec:
            return _import_dotted(spec)
        known = ", ".join(sorted(self.plugins)) or "none"
        raise PluginError(
            f"unknown classifier {spec!r}: expected a registered key ({known}) or a dotted "
            "path 'package.module.ClassName'"
        )

    def discover(self, package: str = "lensflow.shared.classifiers") -> PluginRegistry:
        """Register the plugins of ``package``'s modules and of installed entry points."""
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            if info.name.startswith("_") or info.name in _NOT_PLUGINS:
                continue
            self.scan_module(f"{package}.{info.name}", fallback_key=info.name)
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                self.register(entry.load(), key=entry.name)
            except ImportError as err:
                self.unavailable[entry.name] = f"cannot import {entry.value}: {err}"
                logger.warning("classifier plugin %s unavailable: %s", entry.name, err)
        return self

    def scan_module(
        self, dotted: str, *, fallback_key: str | None = None, replace: bool = False
    ) -> None:
        """Register every plugin class defined in module ``dotted``.

        Args:
            dotted: the module's import path.
            fallback_key: when given, an import failure marks this key unavailable (with the
                reason) instead of raising.
            replace: its plugins take over keys already registered (see :meth:`register`).

        Raises:
            PluginError: the module cannot be imported and no fallback key was given.

        """
        try:
            module = importlib.import_module(dotted)
        except ImportError as err:
            if fallback_key is None:
                raise PluginError(f"cannot import plugin module {dotted!r}: {err}") from err
            self.unavailable[fallback_key] = f"missing dependency ({err})"
            logger.info("classifier plugin %s unavailable: %s", fallback_key, err)
            return
        for _, obj in inspect.getmembers(module, inspect.isclass):
            defined_here = obj.__module__ == dotted
            if issubclass(obj, BaseClassifier) and defined_here and obj.key:
                if inspect.isabstract(obj):
                    continue
                self.register(obj, replace=replace)


def _import_dotted(spec: str) -> type[BaseClassifier]:
    module_name, _, attr = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise PluginError(f"unknown classifier {spec!r}: no module {module_name!r}") from err
        raise PluginUnavailableError(
            f"plugin {spec!r} is unavailable: missing dependency {err.name!r}"
        ) from err
    except ImportError as err:
        raise PluginUnavailableError(f"plugin {spec!r} is unavailable: {err}") from err
    obj = getattr(module, attr, None)
    if obj is None:
        raise PluginError(f"unknown classifier {spec!r}: module {module_name!r} has no {attr!r}")
    if not (inspect.isclass(obj) and issubclass(obj, BaseClassifier)):
        raise PluginError(f"{spec!r} is not a classifier: expected a BaseClassifier subclass")
    if inspect.isabstract(obj):
        raise PluginError(f"{spec!r} is abstract: it does not implement process()")
    return obj


_default: PluginRegistry | None = None


def default_registry() -> PluginRegistry:
    """The registry of built-in and installed plugins, discovered on first use."""
    global _default
    if _default is None:
        _default = PluginRegistry().discover()
    return _default
