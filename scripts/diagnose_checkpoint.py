"""What a trained aSTDP checkpoint does inside: testing from persistent or fresh states, the states it
settles in, and how the two networks' difference evolves over one training batch.

    python scripts/diagnose_checkpoint.py <run>/checkpoints/epoch=1-step=908.ckpt [...] --root ../shared/data

For each checkpoint, on the validation split the run used (``data.val_size`` of its config; at most
``--n-val`` images) and the first training batches of the split:

- ``acc persistent`` / ``acc fresh``: validation accuracy when testing starts from the state the
  previous batch left (as in training and in ``evaluate.py``) or from a fresh draw per batch;
- ``hidden at lo / hi``: fraction of hidden states at the lower / upper bound after inference;
- ``margin``: median gap between the two largest output states;
- ``|dz| profile``: the mean ``|dz|`` of the hidden layer at each step of ``--batches`` training
  batches, with learning on (a copy of the net learns, as in training) and with the rate set to
  0; printed every ``--every`` steps, with its sum over the free and the clamped phase.

With ``--generation`` (a net trained with ``learner=generation``, or any net, to see why it does not
draw): the norm and largest entry of each weight block, and, while each label is clamped from
fresh states ``U(-1, 1)``, the fraction of hidden states at each bound and how much the hidden
states differ between labels (mean ``|h - mean over labels|``; 0: every label gives the same state);
then, after 2 to 160 generation steps, the fraction of generated digits a backprop judge reads as
the clamped label and the spread within a label (``generation.judge``'s two numbers).

With ``--blocks``: only each weight block's norm, mean and largest entry, each layer's biases, the
persistent training states of each layer in each network (mean, fraction at each bound), and the
output units that net_l holds at the lower bound.

With ``--symmetry``: only the symmetry index of the whole net and of each pair of connected layers
(``train/symmetry`` and ``train/symmetry/<a>_<b>`` of training's watch, ``callbacks.watch``), no data needed.
"""

from __future__ import annotations

import argparse

import torch

from astdp.data.mnist import load_mnist
from astdp.factory import build_system
from astdp.errors import CheckpointError
from astdp.lit.checkpoints import read_checkpoint


def load(path: str, persistent: bool | None = None):
    """(System with the checkpoint's weights, biases and persistent states, run config)."""
    try:
        ck = read_checkpoint(path, key="checkpoint")  # weights_only: a file that would run code is refused
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    cfg, sd = ck["astdp_config"], ck["state_dict"]
    model = dict(cfg["model"])
    if persistent is not None:
        model["persistent"] = persistent
    data = cfg["data"]
    system = build_system(model, cfg["learner"], cfg["depth"], int(data["n_inputs"]), int(data["n_outputs"]),
                          int(data["batch_size"]), seed=int(cfg["seed"]), image_size=data.get("image_size"))
    for k, w in enumerate(system.net.weights):
        w.copy_(sd[f"system.net.weights.{k}"])
    for layer, b in enumerate(system.net.biases):
        b.copy_(sd[f"system.net.biases.{layer}"])
    for prefix, state in (("train", system.train_state), ("eval", system.eval_state)):
        for key, t in state.tensors().items():
            t.copy_(sd[f"system.{prefix}_{key}"])
    return system, cfg


def split(cfg: dict, root: str, n_val: int):
    """(train, val) of the run's split of the training pool (``data.split_seed``, ``data.val_size``)."""
    from astdp.data.datamodule import n_val as val_count

    data = cfg["data"]
    splits, _ = load_mnist(root, allow_fallback=True, download=False)
    x, y = splits["train"]
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(int(data.get("split_seed", 0))))
    order = order[: data["n_train"]] if data.get("n_train") else order
    k = val_count(data["val_size"], len(order))
    val, train = order[: min(k, n_val)], order[k:]
    return (x[train], y[train]), (x[val], y[val])


@torch.no_grad()
def test_stats(system, cfg: dict, x: torch.Tensor, y: torch.Tensor) -> dict:
    learner, t = cfg["learner"], system.topology
    lo, hi = system.dynamics.bounds or (float("-inf"), float("inf"))
    hits, at_lo, at_hi, margins, batch = 0, 0.0, 0.0, [], system.batch_size
    for i in range(0, len(y), batch):
        out, _ = system.infer(x[i : i + batch], steps=int(learner["test_steps"]), tol=float(learner["tol"]),
                              stop_when_converged=True)
        hits += int((out.argmax(1) == y[i : i + batch]).sum())
        h = system.eval_state.s[system.readout, : out.shape[0], t.hidden_slice]
        at_lo += float((h <= lo).float().sum())
        at_hi += float((h >= hi).float().sum())
        top2 = out.topk(2, dim=1).values
        margins.append(top2[:, 0] - top2[:, 1])
    n_h = len(y) * (t.hidden_slice.stop - t.hidden_slice.start)
    return {"acc": hits / len(y), "at_lo": at_lo / n_h, "at_hi": at_hi / n_h, "margin": float(torch.cat(margins).median())}


@torch.no_grad()
def dz_profile(system, x: torch.Tensor, y: torch.Tensor, alpha: float | None) -> list[float]:
    """Mean hidden ``|dz|`` per step of one training batch, from the checkpoint's training state."""
    plast = system.relaxer.plast
    plast.total_batches = plast.total_batches or 1  # the rate's clock is not restored: alpha at batch 0
    state = system.train_state.slots(len(y))
    stats = system.relaxer.run(state, system.learner.phases(x, y), alpha=alpha, record=True)
    hs = system.topology.hidden_slice
    return [float(step["dz"][:, hs].abs().mean()) for step in stats.trace]


def block_stats(system) -> None:
    """Norm, mean and largest entry of each weight block; range of each layer's biases."""
    t = system.topology
    for k, w in enumerate(system.net.weights):
        print(f"  block {t.block_name(k):10s} {tuple(w.shape)}  norm {float(w.norm()):7.2f}  mean {float(w.mean()):+.4f}"
              f"  max |w| {float(w.abs().max()):.3f}")
    for layer, b in enumerate(system.net.biases):
        print(f"  biases of layer {layer}: mean {float(b.mean()):+.3f}, from {float(b.min()):+.3f} to {float(b.max()):+.3f}")


def train_state_stats(system) -> None:
    """Per layer and network, the persistent training states: mean and fraction at each bound; per
    output unit, the fraction of slots where net_l holds it at the lower bound (1.00: a dead output)."""
    t, s = system.topology, system.train_state.s
    lo, hi = system.dynamics.bounds or (float("-inf"), float("inf"))
    for layer in range(t.n_layers):
        for n, name in enumerate(("net_s", "net_l")):
            x = s[n][:, t.slice(layer)]
            print(f"  training states, layer {layer}, {name}: mean {float(x.mean()):.3f}, at lo "
                  f"{float((x <= lo).float().mean()):.3f} / hi {float((x >= hi).float().mean()):.3f}")
    out = s[1][:, t.slice(t.output_layer)] <= lo  # (slots, n_out)
    print("  output units of net_l at lo, fraction of slots: " + " ".join(f"{float(f):.2f}" for f in out.float().mean(0)))


@torch.no_grad()
def generation_stats(system, steps=(1, 5, 20, 160)) -> None:
    t = system.topology
    block_stats(system)
    lo, hi = system.dynamics.bounds or (float("-inf"), float("inf"))
    for n in steps:
        y = torch.arange(t.sizes[-1])
        state = system.generate_state(y, steps=n, init_scale=1.0, generator=torch.Generator().manual_seed(0))
        h = state.s[1, :, t.hidden_slice]
        print(f"  generating, step {n:3d}: hidden at lo {float((h <= lo).float().mean()):.3f} / hi "
              f"{float((h >= hi).float().mean()):.3f}, differ between labels {float((h - h.mean(0)).abs().mean()):.3f}")


@torch.no_grad()
def generation_judged(system, cfg: dict, root: str, steps=(2, 4, 8, 16, 160), n: int = 8) -> None:
    """Per number of generation steps: the fraction of ``n`` samples per label that the backprop
    judge (as ``generation.judge``, trained on the run's training split) reads as the label, and
    the spread within a label."""
    from astdp.experiments import generation

    (x, y), _ = split(cfg, root, 0)
    t = system.topology
    clf = generation.classifier(x, y, list(t.sizes[1:-1]), t.sizes[-1], int(cfg.get("generation", {}).get("judge_epochs", 2)))
    for k in steps:
        hit, spread = generation.read(system, clf, n, k)
        print(f"  {k:3d} generation steps: classified as the label {float(hit.mean()):.1%}, spread {spread:.3f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--root", default="data", help="folder holding MNIST/raw (as data.root)")
    p.add_argument("--n-val", type=int, default=2000, help="validation images to test on")
    p.add_argument("--batches", type=int, default=2, help="training batches for the |dz| profile (0: none)")
    p.add_argument("--every", type=int, default=5, help="print the |dz| profile every this many steps")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--generation", action="store_true", help="only the weight blocks and the hidden states while generating")
    p.add_argument("--symmetry", action="store_true", help="only the symmetry index, whole net and per pair of layers")
    p.add_argument("--blocks", action="store_true", help="only the weight blocks, biases and persistent training states")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for path in args.checkpoints:
        if args.blocks:
            print(path)
            system = load(path)[0]
            block_stats(system)
            train_state_stats(system)
            continue
        if args.symmetry:
            net = load(path)[0].net
            pairs = "  ".join(f"{k} {v:+.3f}" for k, v in net.pair_symmetry().items())
            print(f"{path}: whole {net.symmetry_index():+.3f}  pairs {pairs}")
            continue
        if args.generation:
            print(path)
            system, cfg = load(path)
            generation_stats(system)
            generation_judged(system, cfg, args.root)
            continue
        rows = {}
        for persistent in (True, False):
            system, cfg = load(path, persistent)
            train, val = split(cfg, args.root, args.n_val)
            rows[persistent] = test_stats(system, cfg, *val)
        print(f"{path}: {len(val[1])} validation images")
        for persistent, r in rows.items():
            print(f"  acc {'persistent' if persistent else 'fresh':10s} {r['acc']:.2%}   hidden at lo {r['at_lo']:.3f} "
                  f"/ hi {r['at_hi']:.3f}   margin {r['margin']:.3f}")
        free = int(cfg["learner"].get("free_steps", 0))
        for label, alpha in (("learning", None), ("rate 0", 0.0)):
            system, _ = load(path)
            bs = system.batch_size
            for b in range(args.batches):
                prof = dz_profile(system, train[0][b * bs : (b + 1) * bs], train[1][b * bs : (b + 1) * bs], alpha)
                shown = " ".join(f"{v:.1e}" for v in prof[:: args.every])
                print(f"  |dz| {label:8s} batch {b}: sum free {sum(prof[:free]):.2e} clamped {sum(prof[free:]):.2e}"
                      f" | every {args.every} steps: {shown}")


if __name__ == "__main__":
    main()
