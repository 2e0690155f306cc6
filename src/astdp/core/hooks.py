"""What the relaxation asks of a data-parallel run: the two kinds of ``Relaxer.reduce_hook``.

The engine knows nothing of processes or transports; ``lit/ddp.py`` implements these over
torch.distributed (and shared memory on one machine).

- :class:`UpdateSum`: any callable ``hook(deltas)`` that sums a step's updates (a list of tensors)
  over the processes, in place. A plain function qualifies.
- :class:`FactorGather`: an :class:`UpdateSum` that can also gather every process's factors of
  eq (15) (``dz`` and ``z_s``), so that each process builds the summed update itself
  (:meth:`astdp.core.exchange.FactorExchange._exchange_begin`).
"""

from __future__ import annotations

import abc
from typing import Sequence

import torch


class UpdateSum(abc.ABC):
    """Sums a step's weight and bias updates over the processes, in place."""

    world: int = 1  # processes in the run

    @abc.abstractmethod
    def __call__(self, deltas: list[torch.Tensor]) -> None: ...


class FactorGather(UpdateSum):
    """An :class:`UpdateSum` that can gather each process's factors instead of summing dense updates."""

    @abc.abstractmethod
    def factors(self, batch: int, factor_elements: int, dense_elements: int) -> bool:
        """Whether this phase gathers factors (a collective: every process gets the same answer)."""

    @abc.abstractmethod
    def gather(self, parts: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        """Each of ``outs`` (world x B, ...) = every process's part (B, ...), rank by rank."""

    @abc.abstractmethod
    def gather_start(self, parts: list[torch.Tensor], outs: list[torch.Tensor], sums: Sequence[torch.Tensor] = (),
                     sum_outs: Sequence[torch.Tensor] = ()) -> None:
        """Start a step's exchange: ``parts`` gathered into ``outs``, ``sums`` summed into ``sum_outs``."""

    @abc.abstractmethod
    def gather_wait(self) -> None:
        """Complete the exchange :meth:`gather_start` began."""
