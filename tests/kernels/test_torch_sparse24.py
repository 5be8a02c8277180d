"""2:4 semi-structured sparsity: the magnitude pattern, the check, and the layer (dense on CPU,
the sparse tensor-core kernel on CUDA)."""

from __future__ import annotations

import pytest
import torch

from bitprism.kernels.torch_sparse24 import Sparse24Linear, is_2_4, mask_2_4


def test_the_mask_keeps_the_two_largest_of_each_four() -> None:
    weight = torch.tensor([[0.1, -3.0, 2.0, 0.5, 4.0, 0.0, -0.2, 1.0]])
    assert mask_2_4(weight).tolist() == [[False, True, True, False, True, False, False, True]]
    assert mask_2_4(torch.ones(1, 4)).tolist() == [[True, True, False, False]]  # ties: the first
    big = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
    pruned = big * mask_2_4(big)
    assert is_2_4(pruned) and not is_2_4(big)
    assert (pruned != 0).sum().item() == big.numel() // 2


def test_the_layer_computes_the_masked_linear() -> None:
    linear = torch.nn.Linear(128, 64)
    weight = linear.weight.detach() * mask_2_4(linear.weight)
    layer = Sparse24Linear(weight, linear.bias)
    x = torch.randn(5, 128)
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, weight, linear.bias))


def test_a_weight_off_the_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        Sparse24Linear(torch.randn(8, 16), None)
    with pytest.raises(ValueError, match="divisible by 4"):
        mask_2_4(torch.randn(8, 18))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_it_runs_the_semi_structured_kernel() -> None:
    torch.manual_seed(0)
    dense = torch.randn(256, 256)
    weight = (dense * mask_2_4(dense)).half().cuda()
    layer = Sparse24Linear(weight, None)
    x = torch.randn(128, 256, dtype=torch.float16, device="cuda")
    out = layer(x)
    assert layer._sparse is not None  # the compressed form was used
    torch.testing.assert_close(out, x @ weight.T, rtol=1e-2, atol=1e-2)
