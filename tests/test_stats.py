"""helpers.stats: intervals on medians and paired ratios, the words they earn, the load named."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import time

import pytest

from helpers import stats


def test_median_interval_worked_example() -> None:
    """n=10: the 95% interval is [x(2), x(9)] (coverage 1 - 2*11/1024 = 97.9%)."""
    xs = [7.0, 1.0, 3.0, 9.0, 5.0, 2.0, 8.0, 4.0, 10.0, 6.0]
    assert stats.median_interval(xs) == (5.5, 2.0, 9.0)
    # n=6: [min, max] covers 1 - 2/64 = 96.9%; n=5 covers only 93.8%, so no 95% interval exists
    assert stats.median_interval([3, 1, 2, 6, 5, 4]) == (3.5, 1, 6)
    median, low, high = stats.median_interval([3, 1, 2, 5, 4])
    assert median == 3 and math.isinf(low) and math.isinf(high)
    assert stats.faster_word(low, high) == "inconclusive"  # too few rounds judge nothing


def test_paired_ratio_worked_example() -> None:
    """Per round: rung 0's time over the rung's, then the median's interval of those ratios."""
    base = [10.0, 12.0, 11.0, 10.0, 30.0, 10.0, 11.0, 12.0, 10.0, 11.0]  # round 5: a hiccup
    fast = [5.0, 6.0, 5.5, 4.0, 15.0, 5.0, 5.5, 6.0, 5.0, 4.4]  # ... that hit both sides alike
    ratios = sorted(b / f for b, f in zip(base, fast, strict=True))  # 2.0 x8, 2.5 x2
    assert stats.paired_ratio(base, fast) == (2.0, ratios[1], ratios[8]) == (2.0, 2.0, 2.5)
    with pytest.raises(ValueError, match="one pair per round"):
        stats.paired_ratio([1.0], [1.0, 2.0])


def test_words_respect_the_interval() -> None:
    assert stats.faster_word(1.02, 1.10) == "faster"
    assert stats.faster_word(0.95, 1.04) == "inconclusive"
    assert stats.band_word(440, 500, (336, 624)) == "reproduced"
    assert stats.band_word(700, 800, (336, 624)) == "differs"
    assert stats.band_word(600, 650, (336, 624)) == "inconclusive"
    assert stats.goal_met(1.01, 1.2, 1.0) is True and stats.goal_met(0.9, 1.1, 1.0) is None
    assert stats.goal_met(2.5, 2.9, 3.0, higher_is_better=False) is True
    assert "95% CI 2.4-2.63" in stats.interval_text(2.51, 2.40, 2.63)


def test_planted_spread_is_inconclusive_and_a_clean_clock_is_judged() -> None:
    """A fake clock: the same 1.10x speedup, once with a wide planted spread, once clean."""
    noisy = itertools.cycle([0.6, 1.7, 1.1, 0.8, 1.6, 1.1, 0.7, 1.5])
    clean = itertools.cycle([1.09, 1.10, 1.11, 1.10])
    wide = stats.until_narrow(lambda: next(noisy), min_rounds=8, max_rounds=20, budget_s=60)
    tight = stats.until_narrow(lambda: next(clean), min_rounds=8, max_rounds=20, budget_s=60)
    assert stats.faster_word(*wide.interval()[1:]) == "inconclusive"
    assert wide.stopped.startswith("max rounds") and "goal +-3%" in wide.stopped
    assert stats.faster_word(*tight.interval()[1:]) == "faster"
    assert tight.stopped == "narrow: +-0.9% after 8 rounds"


def test_rounds_stop_at_the_budget() -> None:
    noisy = itertools.cycle([1.0, 3.0])
    rounds = stats.until_narrow(lambda: (time.sleep(0.01), next(noisy))[1], min_rounds=6,
                                max_rounds=1000, budget_s=0.1)
    assert 6 <= len(rounds.values) < 1000 and rounds.stopped.startswith("budget:")
    with pytest.raises(ValueError, match="min_rounds=0"):
        stats.until_narrow(lambda: 1.0, min_rounds=0)


def _work() -> float:
    """Seconds of about 12 ms of pure-Python work (longer than a scheduler's time slice)."""
    t = time.perf_counter()
    sum(i * i for i in range(300_000))
    return time.perf_counter() - t


SPIN = "import time\nprint('go', flush=True)\nend = time.time() + 30\nwhile time.time() < end: pass"


@pytest.mark.slow
def test_a_spinning_process_widens_the_interval_and_is_named() -> None:
    """Real contention: one spinning process per core, let run (SIGCONT) during every other
    timed call and held (SIGSTOP) during the rest, so half the calls share the cores."""
    import signal

    spinners = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE,
                                 text=True) for _ in range(stats.Load().cores)]
    try:
        for p in spinners:  # each is spinning before the timing starts
            assert p.stdout.readline().strip() == "go"
        busy = []
        with stats.watch_load() as load:
            for i in range(30):
                for p in spinners:
                    p.send_signal(signal.SIGCONT if i % 2 else signal.SIGSTOP)
                time.sleep(0.005)  # the scheduler sees the change
                busy.append(_work())
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    quiet, shared = busy[0::2], busy[1::2]
    assert stats.median_interval(shared)[0] > 1.2 * stats.median_interval(quiet)[0], busy
    # wider than the +-3% goal: rounds on this machine would never stop as "narrow"
    assert stats.half_width(*stats.median_interval(busy)) > stats.NARROW, busy
    assert any("other processes used" in why for why in load.busy()), load
    assert load.to_dict()["other_processes_cores"] > 0.25
