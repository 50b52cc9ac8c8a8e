"""The edge control plane: desired edge configs in the database, pushed and reconciled over MQTT.

- :class:`~lensflow.cloud.control.configs.ConfigService` — config versions, assignments, acks.
- :func:`~lensflow.cloud.control.configs.validate_edge_config` — validate and hash a config text.
- :class:`~lensflow.cloud.control.reconciler.Reconciler` — statuses and acks in, configs out.
"""

from lensflow.cloud.control.configs import ConfigService, ValidatedConfig, validate_edge_config
from lensflow.cloud.control.reconciler import Reconciler

__all__ = ["ConfigService", "Reconciler", "ValidatedConfig", "validate_edge_config"]
