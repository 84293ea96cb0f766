"""Back-off: grows exponentially, stays under its cap, jitters, and starts over after success."""

import random

import pytest

from portal_agent.backoff import Backoff


def delays(backoff, n):
    return [backoff.next_delay() for _ in range(n)]


def test_delays_stay_within_each_jittered_step():
    got = delays(Backoff(base=1, cap=100, rng=random.Random(1)), 6)
    for n, delay in enumerate(got):
        assert 2**n / 2 <= delay <= 2**n


def test_delays_never_exceed_the_cap():
    assert max(delays(Backoff(base=1, cap=8, rng=random.Random(2)), 200)) <= 8


def test_delays_reach_the_cap_range_after_enough_failures():
    assert min(delays(Backoff(base=1, cap=8, rng=random.Random(3)), 50)[10:]) >= 4


def test_two_agents_do_not_retry_in_lock_step():
    a = delays(Backoff(rng=random.Random(4)), 5)
    b = delays(Backoff(rng=random.Random(5)), 5)
    assert a != b


def test_reset_starts_again_from_the_base_delay():
    backoff = Backoff(base=1, cap=60, rng=random.Random(6))
    delays(backoff, 10)
    backoff.reset()
    assert backoff.next_delay() <= 1


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": 10, "cap": 5}, {"factor": 0.5}])
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
