import pytest
import torch

from synseg_core.serving.threads import IntraOpThreads, threads_per_lane


@pytest.mark.parametrize("lanes, threads, expected", [(1, 2, 2), (2, 2, 1), (3, 2, 1), (3, 16, 5), (4, 16, 4)])
def test_lanes_share_the_threads_and_keep_at_least_one_each(lanes, threads, expected):
    assert threads_per_lane(lanes, threads) == expected


def test_zero_lanes_is_an_error_naming_the_value():
    with pytest.raises(ValueError, match="lanes must be >= 1, got 0"):
        threads_per_lane(0, 4)


def test_split_sets_torch_threads_and_restore_gives_them_back():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        split = IntraOpThreads.split_between(3)
        assert (split.per_lane, split.previous, torch.get_num_threads()) == (1, 4, 1)
        split.restore()
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)
