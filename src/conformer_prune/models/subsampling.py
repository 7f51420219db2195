"""4x convolutional subsampling front end.

Two ``Conv2d(3x3, stride 2)`` + ReLU layers over (time, frequency), then a linear map to ``d_model``.
Output length follows the convolution arithmetic (no padding)::

    T1 = (T - 3) // 2 + 1,   T' = (T1 - 3) // 2 + 1

Shapes: ``B`` batch, ``T`` input frames, ``F`` features, ``C`` channels, ``D`` model dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def subsampled_lengths(lengths: Tensor) -> Tensor:
    """Frames after two unpadded 3x3 stride-2 convolutions."""
    return ((lengths - 3).div(2, rounding_mode="floor") + 1 - 3).div(2, rounding_mode="floor") + 1


class Conv2dSubsampling(nn.Module):
    """Conv2d 4x subsampling.

    Args:
        input_dim: feature dim ``F`` (80 log-mels).
        d_model: output dim ``D``.
        channels: conv channels ``C``; the most expensive part of a small model on CPU, so the CPU
            presets use 64 rather than ``d_model``.
    """

    def __init__(self, input_dim: int, d_model: int, channels: int) -> None:
        super().__init__()
        if input_dim < 7:
            raise ValueError(f"subsampling needs input_dim >= 7 features, got {input_dim}")
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
        )
        # Channels-last filters make oneDNN run both convolutions in NHWC: 4-10x faster on CPU than NCHW
        # with a single input channel (benchmarks/inference.py). load_state_dict copies into them, keeping it.
        self.conv.to(memory_format=torch.channels_last)
        freq = ((input_dim - 3) // 2 + 1 - 3) // 2 + 1
        self.out = nn.Linear(channels * freq, d_model)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, F), (B,) -> (B, T', D), (B,)``."""
        if x.size(1) < 7:
            raise ValueError(f"utterance too short for 4x subsampling: {x.size(1)} frames (need >= 7)")
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F'), stored channels-last
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))  # (B, T', D)
        return x, subsampled_lengths(lengths).clamp(min=1, max=t).to(torch.long)
