"""Retry delays for long-running loops (camera reconnects, broker reconnects), from tenacity.

A reconnect loop runs forever and starts its schedule again after each good connection, so it
asks for delays one at a time rather than wrapping a call in ``tenacity.retry``:
:class:`Backoff` keeps tenacity's own wait strategy and attempt count
(:class:`tenacity.RetryCallState`) and hands out the next delay.
"""

from __future__ import annotations

import tenacity


class Backoff:
    """Capped exponential delays with jitter, so clients that fail together retry apart.

    Delay ``n`` (from 0) lies in ``[base / 2, base]`` with ``base = min(max_s, initial_s *
    factor**n)``: tenacity's exponential wait for one half, its random exponential wait for the
    other.

    Args:
        initial_s: The base of the first delay.
        max_s: The largest base.
        factor: Growth of the base per failure.

    """

    def __init__(self, *, initial_s: float = 0.5, max_s: float = 30.0, factor: float = 2.0) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"expected 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        half, cap = initial_s / 2, max_s / 2
        self.initial_s, self.max_s = initial_s, max_s
        self._wait = tenacity.wait_exponential(
            multiplier=half, max=cap, exp_base=factor
        ) + tenacity.wait_random_exponential(multiplier=half, max=cap, exp_base=factor)
        self._state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._state.attempt_number - 1

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt."""
        delay = float(self._wait(self._state))
        self._state.attempt_number += 1
        return delay

    def reset(self) -> None:
        """Start again from the first delay (a connection worked)."""
        self._state.attempt_number = 1
