"""sync=step without Lightning: two processes (gloo) that exchange dense updates, or gathered factors
through shared memory or gloo, end with the weights of one process trained on the combined batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from omegaconf import OmegaConf

from astdp.factory import build_system

# the default model and learner (inputs set exactly, hidden rate x2) on a small net; no fake targets and
# all states starting at 0, so that nothing depends on how the batch is split
OVERRIDES = ["logger=none", "depth.hidden=[16]", "model.fake_target.enabled=false", "model.init_scale=0",
             "learner.steps=6", "learner.free_steps=2", "learner.alpha=0.05",
             "learner.schedule=constant"]
SIZES = (8, 8)  # samples per process and batch; the last batch is uneven (8 and 6)
BATCHES = 3


def _system(cfg: dict, batch: int):
    return build_system(cfg["model"], cfg["learner"], cfg["depth"], 784, 10, batch, seed=0)


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    sizes = [sum(SIZES)] * (BATCHES - 1) + [SIZES[0] + 6]
    return [(torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g)) for n in sizes]


def _weights(system) -> list[torch.Tensor]:
    return [t.clone() for t in (*system.net.weights, *system.net.biases)]


def _compose(compose_cfg, engine: str) -> dict:
    return OmegaConf.to_container(compose_cfg([*OVERRIDES, f"model.engine={engine}"]), resolve=True)


def _worker(rank: int, cfg: dict, port: int, exchange: str, transport: str, out) -> None:
    from astdp.lit.ddp import AllReduceSum

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    system = _system(cfg, SIZES[rank])
    hook = AllReduceSum(exchange=exchange)
    if transport == "gloo":
        hook.shared = None
    system.relaxer.reduce_hook = hook
    choices, per_step = [], 0
    for x, y in _data():
        lo = 0 if rank == 0 else SIZES[0]
        n = SIZES[rank] if x.shape[0] == sum(SIZES) else (SIZES[0] if rank == 0 else 6)
        system.train_batch(x[lo : lo + n], y[lo : lo + n])
        choices.append(hook.exchanged)
        if len(choices) == 1:
            per_step = hook.bytes // hook.calls  # the first batch's message per step
    if rank == 0:
        out.put(([t.numpy().copy() for t in _weights(system)], choices, per_step))
    dist.destroy_process_group()


def _two_processes(cfg: dict, port: int, exchange: str, transport: str):
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    procs = mp.start_processes(_worker, args=(cfg, port, exchange, transport, out), nprocs=2, start_method="spawn",
                               join=False)
    weights, choices, per_step = out.get()  # before join: a large message would block the worker's exit
    procs.join()
    return [torch.from_numpy(w) for w in weights], choices, per_step


@pytest.mark.parametrize("exchange,transport,engine,port", [
    ("factors", "shared", "eager", 29631), pytest.param("factors", "gloo", "eager", 29633, marks=pytest.mark.slow),
    pytest.param("dense", "gloo", "eager", 29635, marks=pytest.mark.slow),
    # the fused engine receives a step's message after its compiled pass (four shapes to compile)
    pytest.param("factors", "shared", "fused", 29637, marks=pytest.mark.slow)])
def test_two_processes_equal_one_with_the_combined_batch(compose_cfg, exchange, transport, engine, port):
    cfg = _compose(compose_cfg, engine)
    single = _system(cfg, sum(SIZES))
    before = _weights(single)
    for x, y in _data():
        single.train_batch(x, y)
    want = _weights(single)
    assert max(float((a - b).abs().max()) for a, b in zip(want, before)) > 1e-2  # it learned
    got, choices, per_step = _two_processes(cfg, port, exchange, transport)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # the uneven last batch always sums dense updates
    assert choices == [exchange] * (BATCHES - 1) + ["dense"]
    # per step: dense, the blocks that learn (none into the clamped inputs) and every bias; factors
    # (the inputs once per phase), the hidden dz of 8 samples (the blocks from the inputs need it)
    # and their output z_s (hidden <- output from factors: 8 x 10 < 16 x 10), the output block's
    # own dense update (its factors, 8 x (10 + 16), would be more than its 10 x 16), dz's column sums
    factors = 8 * 16 + 8 * 10 + 10 * 16 + 16 + 10
    assert per_step == 4 * (784 * 16 + 2 * 16 * 10 + 784 + 16 + 10 if exchange == "dense" else factors)


def _periodic_worker(rank: int, port: int, transport: str, out) -> None:
    from astdp.lit.ddp import PeriodicSum

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    tensors = [torch.arange(12.0).view(3, 4), torch.ones(5), torch.zeros(2)]  # the same start everywhere
    periodic = PeriodicSum(tensors)
    if transport == "gloo":
        periodic.shared = None
    used = "shared" if periodic.shared is not None else "gloo"
    for k in range(2):  # every process changes its copies its own way, then the changes are summed
        tensors[0].add_(rank + 1 + k)
        tensors[1].mul_(2.0 + rank)
        periodic.sync()
    summed = [t.numpy().copy() for t in tensors]
    # overlapped: the sum arrives one call later, on top of what this process learnt meanwhile
    tensors[0].add_(10.0 * (rank + 1))
    periodic.sync(overlap=True)
    early = tensors[0].numpy().copy()  # this process's own change only
    tensors[0].add_(100.0 * (rank + 1))
    periodic.sync(overlap=True)  # brings the first overlapped sum
    middle = tensors[0].numpy().copy()
    quiet = periodic.active[2]  # the third tensor has not changed: it left the message
    if rank == 1:  # it changes in one process only, at the end
        tensors[2].add_(7.0)
    periodic.sync()  # completes everything, the third tensor's change included
    out.put((rank, used, summed[:2], early, middle, tensors[0].numpy().copy(), quiet, tensors[2].numpy().copy()))
    dist.destroy_process_group()


@pytest.mark.parametrize("transport,port", [("shared", 29641), pytest.param("gloo", 29643, marks=pytest.mark.slow)])
def test_periodic_sum_adds_every_process_change(transport, port):
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    procs = mp.start_processes(_periodic_worker, args=(port, transport, out), nprocs=2, start_method="spawn",
                               join=False)
    results = sorted(out.get() for _ in range(2))
    procs.join()
    first = torch.arange(12.0).view(3, 4) + (1 + 2)  # both changes of the first round
    second = first + (2 + 3)
    ones = torch.ones(5)
    bias = ones + (2 - 1) * ones + (3 - 1) * ones  # 4: the first round's changes, +1 and +2
    bias = bias + (2 - 1) * bias + (3 - 1) * bias  # 16
    for rank, used, (weights, biases), early, middle, last, quiet, third in results:
        assert used == transport
        assert not quiet
        torch.testing.assert_close(torch.from_numpy(third), torch.full((2,), 7.0), rtol=0, atol=0)
        torch.testing.assert_close(torch.from_numpy(weights), second, rtol=0, atol=0)
        torch.testing.assert_close(torch.from_numpy(biases), bias, rtol=0, atol=0)
        own = 10.0 * (rank + 1)
        torch.testing.assert_close(torch.from_numpy(early), second + own, rtol=0, atol=0)
        # the first overlapped sum (10 + 20) and this process's later change, not yet the others'
        torch.testing.assert_close(torch.from_numpy(middle), second + 30.0 + 10 * own, rtol=0, atol=0)
        torch.testing.assert_close(torch.from_numpy(last), second + 30.0 + 300.0, rtol=0, atol=0)
