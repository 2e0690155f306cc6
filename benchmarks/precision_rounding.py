"""Is anything the learning rule needs rounded away at ``trainer.precision=bf16-mixed``?

    python -m benchmarks.precision_rounding --root ../shared/data     # the default net on MNIST, one thread

The default run's system (``python train.py`` with its defaults: 784-512-10, bounded reading) is
trained ``--batches`` batches at fp32 on MNIST digits, so that its states and ``dz`` are those of a
run under way, then halted in the middle of a clamped phase of the next batch. From that one state:

1. One step's weight update ``dW = alpha dz^T rho(s_s)`` (eq 15, the training rate) of every block,
   computed four ways, each against fp32:
   - ``bf16 (engine)``: ``dz`` the fp32 difference, cast with ``rho(s_s)`` for the product, the product
     added to the fp32 weights (what the engine does);
   - ``bf16 rates``: ``dz`` taken as the difference of ``rho`` rounded to bf16 first;
   - ``bf16 weights``: the engine's product added to weights stored in bf16;
   - both of the last two.
   Figures: the relative error ``|dW - dW_fp32| / |dW_fp32|`` (Frobenius) and the share of the
   entries that fp32 moves which stay where they were (``lost``).
2. ``--steps`` relaxation steps from that state at bf16 against fp32, no learning, no fake targets:
   the relative error of the resulting ``dz`` per layer (the drives' rounding, through the dynamics).

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

CONF = Path(__file__).resolve().parents[1] / "conf"


def default_system(root: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from astdp.data.datamodule import AstdpDataModule
    from astdp.factory import build_system

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"data.root={root}", "logger=none", "model.engine=eager"])
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    system = build_system(plain(cfg.model), plain(cfg.learner), plain(cfg.depth), int(cfg.data.n_inputs),
                          int(cfg.data.n_outputs), int(cfg.data.batch_size), seed=int(cfg.seed))
    node = {k: v for k, v in cfg.data.items() if k not in ("_target_", "budget", "max_epochs")}
    dm = AstdpDataModule(**node)
    dm.setup("fit")
    return system, dm.train_set.tensors, dm.source


def step_updates(system, state, rate: float) -> dict[str, list[torch.Tensor]]:
    """One step's ``dW`` of every learning block, four ways, from the same ``state``."""
    from astdp.core import activations, plasticity
    from astdp.core.precision import Products

    z = torch.empty_like(state.s)
    activations.get_into(system.dynamics.activation)(state.s.clone(), z, torch.empty_like(z))
    dz32 = z[1] - z[0]  # (B, N) fp32
    dz_rates = (z[1].bfloat16() - z[0].bfloat16()).float()  # the difference of bf16 rates
    out = {}
    for name, dz, cast, bf16_weights in (("fp32", dz32, None, False), ("bf16 (engine)", dz32, Products(), False),
                                         ("bf16 rates", dz_rates, Products(), False),
                                         ("bf16 weights", dz32, Products(), True),
                                         ("bf16 rates and weights", dz_rates, Products(), True)):
        net = system.net.clone()
        if bf16_weights:  # weights stored in bf16: each update is added to the rounded weight
            for w in net.weights:
                w.data = w.data.bfloat16().float()
        before = [w.clone() for w in net.weights]
        plasticity.apply(net, dz, z[0], rate, cast=cast)
        if bf16_weights:
            for w in net.weights:
                w.data = w.data.bfloat16().float()
        out[name] = [w - b for w, b in zip(net.weights, before)]
    return out


def relaxed_dz(system, state, phase, steps: int, precision: str | None) -> torch.Tensor:
    from astdp.core.engine import Phase

    from astdp.core import activations

    s = type(state)(state.s.clone(), state.v.clone(), state.dzm.clone())
    relaxer = system.relaxer
    relaxer.set_precision(precision)
    try:
        relaxer.run(s, [Phase(steps, phase.targets, learn=False)], alpha=0.0, fake_on=False)
    finally:
        relaxer.set_precision(None)
    z, _ = activations.get(system.dynamics.activation)(s.s)
    return z[1] - z[0]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="data", help="folder holding MNIST/raw/")
    p.add_argument("--batches", type=int, default=20, help="fp32 training batches before the measurement")
    p.add_argument("--steps", type=int, default=40, help="relaxation steps compared at bf16 and fp32")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from astdp.core import activations
    from astdp.core.engine import Phase
    from astdp.core.state import State

    system, (x, y), source = default_system(args.root)
    batch = system.batch_size
    plast = system.relaxer.plast
    plast.total_batches = -(-len(x) // batch)  # the default run's length (one epoch), for its schedule
    for i in range(args.batches):
        plast.batch = i
        system.train_batch(x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch])
    xb, yb = x[args.batches * batch : (args.batches + 1) * batch], y[args.batches * batch : (args.batches + 1) * batch]
    phases = system.learner.phases(xb, yb)
    state = system.train_state
    plast.batch = args.batches
    clamped = phases[-1]
    half = Phase(clamped.steps // 2, clamped.targets, learn=True)
    system.relaxer.run(state, [*phases[:-1], half])  # halted in the middle of the clamped phase
    snap = State(state.s.clone(), state.v.clone(), state.dzm.clone())
    rate = system.relaxer.plast.rate(system.relaxer.plast.current_alpha, batch)
    t = system.topology

    ups = step_updates(system, snap, rate)
    ref = ups["fp32"]
    rows = []
    for name, dws in ups.items():
        if name == "fp32":
            continue
        num = sum(float((a - b).norm() ** 2) for a, b in zip(dws, ref)) ** 0.5
        den = sum(float(b.norm() ** 2) for b in ref) ** 0.5
        moved = sum(int((b != 0).sum()) for b in ref)
        lost = sum(int(((b != 0) & (a == 0)).sum()) for a, b in zip(dws, ref))
        rows.append({"update": name, "rel_err": num / den, "lost": lost / max(moved, 1)})
    z, _ = activations.get(system.dynamics.activation)(snap.s)
    dz = (z[1] - z[0]).abs()
    hs, out = t.hidden_slice, t.slice(t.output_layer)
    w_abs = torch.cat([w.abs().flatten() for w in system.net.weights])
    dw_abs = torch.cat([d.abs().flatten() for d in ref])
    facts = {"median_abs_dz_hidden": float(dz[:, hs][dz[:, hs] > 0].median()) if (dz[:, hs] > 0).any() else 0.0,
             "median_abs_dz_output": float(dz[:, out][dz[:, out] > 0].median()) if (dz[:, out] > 0).any() else 0.0,
             "share_dz_hidden_below_bf16_spacing_at_rate": float((dz[:, hs] < 2.0 ** -9).float().mean()),
             "median_abs_w": float(w_abs.median()), "median_abs_dw_step": float(dw_abs[dw_abs > 0].median()),
             "bf16_spacing_at_median_w": float(2.0 ** (torch.floor(torch.log2(w_abs.median())) - 7))}

    d32 = relaxed_dz(system, snap, clamped, args.steps, None)
    d16 = relaxed_dz(system, snap, clamped, args.steps, "bf16-mixed")
    relax = {f"dz_rel_err_{name}": float((d16[:, sl] - d32[:, sl]).norm() / d32[:, sl].norm().clamp_min(1e-30))
             for name, sl in (("hidden", hs), ("output", out))}

    print(f"data: {source}; default net {'-'.join(map(str, t.sizes))}; {args.batches} fp32 batches of {batch}, then "
          f"halted at step {clamped.steps // 2} of the clamped phase; rate {rate:.3g}")
    print("| one step's update | rel. error vs fp32 | entries lost |\n|---|---|---|")
    for r in rows:
        print(f"| {r['update']} | {r['rel_err']:.3g} | {100 * r['lost']:.2f} % |")
    for k, v in {**facts, **relax}.items():
        print(f"{k}: {v:.3g}")
    summary = {"source": source, "batches": args.batches, "steps": args.steps, "updates": rows, **facts, **relax}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
