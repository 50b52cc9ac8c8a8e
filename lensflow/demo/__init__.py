"""``lensflow demo``: the whole system on one machine, on sample inputs.

Broker, cloud worker, API and an edge agent run as child processes, watched until every crop
is stored, then summarised.

See :mod:`lensflow.demo.run` for the order of things and :mod:`lensflow.demo.prepare` for
where the run's files go.
"""

from lensflow.demo.prepare import DemoError, DemoOptions
from lensflow.demo.run import run_demo
from lensflow.demo.summary import Summary

__all__ = ["DemoError", "DemoOptions", "Summary", "run_demo"]
