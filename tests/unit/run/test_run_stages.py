"""The run's stages: the time spent in each, and the stage a signal names."""

from __future__ import annotations

import signal

import pytest

from genfair.audit.faults import RunInterrupted
from genfair.audit.run import stages as stages_module
from genfair.audit.run.stages import RunStages


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_stage_is_charged_the_time_until_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(stages_module.time, "perf_counter", clock)
    stages = RunStages()
    clock.now += 2.0
    stages.enter("training")
    clock.now += 5.0
    stages.enter("audit")
    clock.now += 1.0
    stages.enter("data")  # stages can come back (batches read while scoring)
    clock.now += 0.5
    stages.enter("audit")
    clock.now += 0.25
    assert stages.seconds() == {"data": 2.5, "training": 5.0, "audit": 1.25}
    clock.now += 1.0
    assert stages.seconds()["audit"] == 2.25  # the stage now counts up to the call


def test_a_signal_names_the_stage_it_came_in() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stages = RunStages()
    stages.enter("classifier")
    with stages.installed(), pytest.raises(RunInterrupted) as caught:
        signal.raise_signal(signal.SIGTERM)
    assert caught.value.stage == "classifier" and caught.value.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
