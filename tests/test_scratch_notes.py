"""The worked examples of notes 001, pinned: the 5x5 input and the 3x3 kernel 1..9 give, in convzoo.scratch
and in torch.nn.functional, the numbers PyTorch gave when these tests were written."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convzoo.scratch import avg_pool2d, conv2d, corr2d, max_pool2d, output_size, pad2d

X = torch.tensor([[3, 4, 6, 5, 7],
                  [2, 4, 6, 8, 2],
                  [1, 6, 7, 8, 4],
                  [9, 7, 4, 6, 2],
                  [3, 7, 5, 4, 1]], dtype=torch.float32).view(1, 1, 5, 5)
K = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
K3 = torch.tensor([[[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                   [[9, 8, 7], [6, 5, 4], [3, 2, 1]],
                   [[1, 4, 7], [2, 5, 8], [3, 6, 9]]], dtype=torch.float32).view(1, 3, 3, 3)

VALID = torch.tensor([[211, 295, 262],
                      [259, 282, 214],
                      [251, 253, 169]], dtype=torch.float32)
PADDING_1 = torch.tensor([[91, 168, 224, 215, 127],
                          [114, 211, 295, 262, 149],
                          [192, 259, 282, 214, 122],
                          [194, 251, 253, 169, 86],
                          [96, 112, 110, 68, 31]], dtype=torch.float32)
STRIDE_2 = torch.tensor([[211, 262],
                         [251, 169]], dtype=torch.float32)
MAX_POOL_2 = torch.tensor([[4, 8],
                           [9, 8]], dtype=torch.float32)
AVG_POOL_2 = torch.tensor([[3.25, 6.25],
                           [5.75, 6.25]])
THREE_CHANNELS = torch.tensor([[625, 837, 778],
                               [713, 854, 674],
                               [745, 799, 579]], dtype=torch.float32)

CASES = {
    "valid": (lambda X: conv2d(X, K), lambda X: F.conv2d(X, K), VALID),
    "padding 1": (lambda X: conv2d(X, K, padding=1), lambda X: F.conv2d(X, K, padding=1), PADDING_1),
    "stride 2": (lambda X: conv2d(X, K, stride=2), lambda X: F.conv2d(X, K, stride=2), STRIDE_2),
    "max-pool 2": (lambda X: max_pool2d(X, 2), lambda X: F.max_pool2d(X, 2), MAX_POOL_2),
    "avg-pool 2": (lambda X: avg_pool2d(X, 2), lambda X: F.avg_pool2d(X, 2), AVG_POOL_2),
}


@pytest.mark.parametrize("case", CASES)
def test_notes_001_worked_examples(case):
    ours, theirs, expected = CASES[case]
    assert torch.equal(ours(X)[0, 0], expected)  # whole numbers (and quarters): exact in float32
    assert torch.equal(theirs(X)[0, 0], expected)


def test_notes_001_the_loop_gives_the_same_numbers():
    assert torch.equal(corr2d(X[0, 0], K[0, 0]), VALID)
    assert torch.equal(corr2d(pad2d(X[0, 0], 1), K[0, 0]), PADDING_1)


def test_notes_001_three_channel_kernel():
    """The notes' loop sums the 3 kernel slices over one channel: the input repeated on 3 channels."""
    notes_loop = sum(corr2d(X[0, 0], K3[0, c]) for c in range(3))
    X3 = X.repeat(1, 3, 1, 1)  # 1 x 3 x 5 x 5, the same grid on each channel
    assert torch.equal(notes_loop, THREE_CHANNELS)
    assert torch.equal(conv2d(X3, K3)[0, 0], THREE_CHANNELS)
    assert torch.equal(F.conv2d(X3, K3)[0, 0], THREE_CHANNELS)


def test_notes_001_output_sizes():
    assert [output_size(5, 3), output_size(5, 3, padding=1), output_size(5, 3, stride=2),
            output_size(5, 2, stride=2)] == [3, 5, 2, 2]
