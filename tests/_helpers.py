"""Helpers shared by several test files (imported as a plain module; pytest puts tests/ on sys.path)."""
import numpy as np
import torch
import torch.nn as nn


def realistic_bn(model: nn.Module, seed: int) -> nn.Module:
    """Give every BatchNorm2d statistics as after training (not a fresh model's identity); eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.2
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.2
    return model.eval()


def assert_bytes_equal(got: np.ndarray, want: np.ndarray, what: str = "output") -> None:
    """Exact equality of integer outputs; on failure name the count and the first mismatches."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{what}: {len(bad)} mismatching bytes, first at {bad[:5].tolist()}: "
                           f"{got[tuple(bad[0])]} vs {want[tuple(bad[0])]}")
