"""Where outputs come from: the scoring process's threads beside the decoding workers."""

from __future__ import annotations

import pytest
import torch

from genfair.audit.run.sources import _threads_beside, _usable_cores


@pytest.mark.parametrize("workers", [0, 1, 64])
def test_scoring_keeps_the_cores_the_workers_leave_and_gives_them_back(workers: int) -> None:
    before = torch.get_num_threads()
    cores = _usable_cores()
    with _threads_beside(workers):
        assert torch.get_num_threads() == max(1, min(before, cores - workers))
    assert torch.get_num_threads() == before
