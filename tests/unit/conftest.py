"""Unit tests run on one torch thread: small tensors gain nothing from more, and runs stay comparable."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
