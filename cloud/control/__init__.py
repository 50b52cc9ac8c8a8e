"""The edge control plane: desired edge configs in the database, pushed and reconciled over MQTT.

- :class:`~lensflow.cloud.control.configs.ConfigService` — config versions, assignments, acks.
- :func:`~lensflow.cloud.control.configs.validate_edge_config` — validate and hash a config text.
- :class:`~lensflow.cloud.control.reconciler.Reconciler` — statuses and acks in, configs out.
- :class:`~lensflow.cloud.control.rollouts.RolloutService` — canary rollouts, promote, rollback.
"""

from lensflow.cloud.control.configs import ConfigService, ValidatedConfig, validate_edge_config
from lensflow.cloud.control.reconciler import Reconciler
from lensflow.cloud.control.rollouts import RolloutService

__all__ = [
    "ConfigService",
    "Reconciler",
    "RolloutService",
    "ValidatedConfig",
    "validate_edge_config",
]
