"""Hypothesis profiles, as a pytest plugin: property tests are deterministic unless fuzzing.

- ``deterministic`` (the default, what ``make test`` runs): every example drawn from a seed
  derived from the test function, no example database, no deadline and no timing health
  check, so a run fails only when the code changed, never by chance or on a slow machine.
- ``seeded``: the same, but from ``--hypothesis-seed=N`` (loaded when that option is given
  without a profile), so a seed printed by ``make fuzz`` reproduces its failure.
- ``fuzz`` (``--hypothesis-profile=fuzz``, what ``make fuzz`` runs): random seeds and
  :data:`FUZZ_FACTOR` times the examples of :func:`examples`.

Test budgets are written as ``@settings(max_examples=examples(300))``: 300 examples in
``make test``, more when fuzzing.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

DETERMINISTIC = "deterministic"
SEEDED = "seeded"
FUZZ = "fuzz"
FUZZ_FACTOR = 10
"""How many times the examples of ``make test`` a test draws under the ``fuzz`` profile."""

_PROFILE_OPTION = "--hypothesis-profile"
_SEED_OPTION = "--hypothesis-seed"


def examples(ci: int) -> int:
    """The example budget of a property test under the loaded profile.

    Args:
        ci: The examples drawn in ``make test``.

    Returns:
        ``ci``, or ``ci`` times :data:`FUZZ_FACTOR` under the ``fuzz`` profile.

    """
    return ci * FUZZ_FACTOR if settings.get_current_profile_name() == FUZZ else ci


def register_profiles() -> None:
    """Register the three profiles with Hypothesis."""
    steady = settings(
        deadline=None,  # timing is no property: a loaded CI machine must not fail a test
        suppress_health_check=[HealthCheck.too_slow],
        database=None,  # a local example database must not change what CI runs
        print_blob=True,
    )
    settings.register_profile(DETERMINISTIC, steady, derandomize=True)
    settings.register_profile(SEEDED, steady, derandomize=False)
    settings.register_profile(FUZZ, steady, derandomize=False)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register the profiles before Hypothesis' plugin loads one; load ours when none is asked."""
    register_profiles()
    if config.getoption(_PROFILE_OPTION, default=None):
        return  # Hypothesis' own pytest plugin loads it, after this hook
    seeded = config.getoption(_SEED_OPTION, default=None) is not None
    settings.load_profile(SEEDED if seeded else DETERMINISTIC)
