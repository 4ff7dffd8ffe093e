import cProfile
import pstats
import time


def test_probe(twoway):
    pats = []
    for i in range(60):
        p = twoway.patient(given_name="Ann")
        a = twoway.visit(p)
        pats.append(p)
    twoway.send_reminders(a)
    pr = cProfile.Profile()
    t = time.perf_counter()
    pr.enable()
    for i, p in enumerate(pats):
        twoway.text(p.mobile_phone, ["C", "Is there parking near the office?", "Thanks!"][i % 3])
    pr.disable()
    print("\nper request ms", (time.perf_counter() - t) * 1000 / len(pats))
    pstats.Stats(pr).sort_stats("cumulative").print_stats(50)
    assert 0
