import pytest

from careline.messaging.ratelimit import SenderRateLimiter


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds


@pytest.mark.parametrize("rate", [1, 3, 10, 100])
def test_rate_is_exact_in_segments_per_second(rate):
    clock = FakeClock()
    limiter = SenderRateLimiter(rate, clock=clock, sleep=clock.sleep)
    sends = []
    segments = [1, 2, 1, 3] * 50
    for n in segments:
        limiter.wait("+15125550100", n)
        sends.append(clock.now)
    # The last message starts once every earlier segment has had its 1/rate second.
    assert sends[-1] - sends[0] == pytest.approx((sum(segments) - segments[-1]) / rate)
    assert sends[0] == 1000.0  # the first one does not wait


def test_senders_are_limited_independently_and_zero_means_unlimited():
    clock = FakeClock()
    limiter = SenderRateLimiter(1, clock=clock, sleep=clock.sleep)
    assert limiter.reserve("+1A", 1) == 0
    assert limiter.reserve("+1B", 1) == 0
    assert limiter.reserve("+1A", 1) == pytest.approx(1.0)
    unlimited = SenderRateLimiter(0, clock=clock, sleep=clock.sleep)
    assert all(unlimited.reserve("+1A", 5) == 0 for _ in range(100))


def test_idle_time_is_not_saved_up_as_a_burst():
    clock = FakeClock()
    limiter = SenderRateLimiter(2, clock=clock, sleep=clock.sleep)
    limiter.wait("+1A", 1)
    clock.now += 60
    assert limiter.reserve("+1A", 1) == 0
    assert limiter.reserve("+1A", 1) == pytest.approx(0.5)


def test_small_delays_of_the_worker_are_caught_up_so_the_average_rate_holds():
    clock = FakeClock()
    limiter = SenderRateLimiter(100, clock=clock, sleep=clock.sleep)
    first = clock.now
    for i in range(1000):
        limiter.wait("+1A", 1)
        # Every 50 messages the worker spends 0.2 s claiming the next batch.
        clock.now += 0.2 if i % 50 == 49 else 0.001
    assert 999 / (clock.now - first) == pytest.approx(100, rel=0.02)


def test_within_any_second_no_more_than_rate_plus_catch_up_segments_go_out():
    clock = FakeClock()
    limiter = SenderRateLimiter(10, clock=clock, sleep=clock.sleep)
    sent = []
    for i in range(200):
        limiter.wait("+1A", 1)
        sent.append(clock.now)
        clock.now += 0.3 if i % 20 == 19 else 0.0
    for t in sent:
        assert sum(t <= s < t + 1 for s in sent) <= 10 + 5
