import pytest

from careline.messaging.ratelimit import CATCH_UP_SECONDS, SenderRateLimiter


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
        assert sum(t <= s < t + 1 for s in sent) <= 10 + 10 * CATCH_UP_SECONDS


def test_the_worker_waits_by_the_segments_of_each_text(build):
    from datetime import timedelta

    from django.utils import timezone

    from careline.messaging.dispatch import Dispatcher
    from careline.messaging.gateways.simulator import SimulatorGateway
    from careline.messaging.models import OutboundMessage
    from careline.messaging.outbox import queue_reply

    org = build.organization()
    bodies = ["a" * 400, "b" * 200, "c", "d" * 200]  # 3, 2, 1 and 2 segments
    now = timezone.now()
    for i, body in enumerate(bodies):
        reply = queue_reply(
            organization_id=org.id, to_phone=f"+151255501{i:02d}", body=body, sender="+1A"
        )
        OutboundMessage.objects.filter(pk=reply.pk).update(due_at=now - timedelta(seconds=9 - i))
    clock = FakeClock()
    starts = []

    class Gateway(SimulatorGateway):
        def send(self, sms):
            starts.append(clock.now)
            return super().send(sms)

    limiter = SenderRateLimiter(2, clock=clock, sleep=clock.sleep)
    Dispatcher(Gateway(), limiter=limiter, clock=lambda: now).run_once()
    segments = OutboundMessage.objects.order_by("due_at").values_list("segments", flat=True)
    assert list(segments) == [3, 2, 1, 2]
    # Each text waits for the segments before it, at 2 segments a second.
    assert [s - 1000 for s in starts] == pytest.approx([0, 1.5, 2.5, 3.0])
