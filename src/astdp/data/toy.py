"""The paper's toy data sets (§3.2) as tensors. No Lightning import here.

- ``rivalry``: the 4 one-hot vectors of dimension 4; label ``i`` for pattern ``i`` (the label's
  one-hot equals the input). §3.2.2 trains 4-8-4 on them, then shows an ambiguous ``[1, 1, 0, 0]``.
- ``order``: the 8 one-hot vectors of dimension 8, input = output, presented in the fixed cyclic
  order ``i -> (i + stride) mod 8`` (§3.2.4). With ``B`` batch slots, slot ``b`` walks its own cycle
  starting at pattern ``b mod 8``: item ``k * B + b`` of the sequence is pattern
  ``(b + k * stride) mod 8``. Each slot keeps its network state from one batch to the next, so
  every slot sees exactly the order ``i -> i + stride``. Never shuffle this sequence.
- ``stdp_pair``: a placeholder for the two-neuron timing protocol (§3.2.3), which is run by its own
  experiment function, not by the training loop.
"""

from __future__ import annotations

import torch

STRIDES = (1, 3)


def rivalry(repeats: int = 1, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``repeats`` copies of the 4 patterns, shuffled when a generator is given: x (n, 4), y (n,)."""
    y = torch.arange(4).repeat(repeats)
    if generator is not None:
        y = y[torch.randperm(len(y), generator=generator)]
    return torch.eye(4)[y], y


def order_sequence(stride: int, batch_size: int, cycles: int = 1) -> torch.Tensor:
    """Pattern indices ``(cycles * 8 * batch_size,)`` laid out batch after batch (see module doc)."""
    if stride not in STRIDES:
        raise ValueError(f"data.stride must be one of {list(STRIDES)}, got {stride}")
    k = torch.arange(cycles * 8).view(-1, 1)  # (batches, 1)
    b = torch.arange(batch_size).view(1, -1)  # (1, B)
    return ((b + k * stride) % 8).reshape(-1)


def order(stride: int, batch_size: int, cycles: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, 8) one-hot, y (n,) = the pattern index (the target equals the input)."""
    y = order_sequence(stride, batch_size, cycles)
    return torch.eye(8)[y], y


def stdp_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """One presynaptic pulse and its postsynaptic partner: x (1, 1), y (1,)."""
    return torch.ones(1, 1), torch.zeros(1, dtype=torch.long)
