"""How well one batch's aSTDP update points along Equilibrium Propagation's gradient estimate, per tensor.

Both start from the same freshly drawn net and the first 128 training digits: aSTDP runs one training
batch (``learner=supervised`` with a shared free phase of ``--free`` steps and ``--steps`` in all); EP,
on a copy, relaxes 300 free steps and 100 nudged steps at ``beta = +-0.05`` and estimates minus the
loss gradient. The model is the default's (fake targets on, ``--no-fake``: off) with tied pairs. Prints the cosine of the two for every weight block, bias and conv kernel
(docs/FINDINGS.md section 34). ``--kernel-scale`` multiplies the conv kernels' initial draw.

    python scripts/update_cosine.py --root ../shared/data --depth conv_mnist
    python scripts/update_cosine.py --root ../shared/data --depth h512
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from astdp.data.mnist import load_mnist
from astdp.factory import build_system

CONF = Path(__file__).resolve().parents[1] / "conf"
MODEL = dict(activation="hardsigmoid", eps=[0.5, 0.5], beta=[0.4, 0.5], beta_input=[1.0, 1.0], beta_output=[0.0, 1.0],
             bounds=[0.0, 1.0], input_clamp="exact", fake_target=dict(k=50.0, t_c=0.25, m=0.95), engine="eager",
             pairs="tied")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data")
    p.add_argument("--depth", default="conv_mnist")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--free", type=int, default=20)
    p.add_argument("--kernel-scale", type=float, default=1.0)
    p.add_argument("--no-fake", action="store_true", help="aSTDP without fake targets")
    p.add_argument("--model", default="{}", help='JSON overrides of the aSTDP model, e.g. \'{"fake_target": {"t_c": 0.1}}\'')
    p.add_argument("--hidden", default=None, help='JSON list replacing the depth\'s hidden layers')
    args = p.parse_args()
    torch.set_num_threads(1)
    doc = yaml.safe_load((CONF / "depth" / f"{args.depth}.yaml").read_text())
    depth = doc.get("depth", doc)
    if args.hidden:
        depth = {**depth, "hidden": json.loads(args.hidden)}
    model = {**MODEL, "fake_target": dict(enabled=False)} if args.no_fake else dict(MODEL)
    for key, value in json.loads(args.model).items():
        model[key] = {**model.get(key, {}), **value} if isinstance(value, dict) else value
    astdp = build_system(model, dict(name="supervised", alpha=1e-4, steps=args.steps, free_steps=args.free,
                                     shared_free=True, schedule="constant"), depth, 784, 10, 128, seed=0)
    ep = build_system(MODEL, dict(name="ep", alpha=1e-4, steps=400, free_steps=300, beta=0.05, init_gain=1.0),
                      depth, 784, 10, 128, seed=0)
    for k in astdp.net.kernels:
        k.mul_(args.kernel_scale)
    ep.net.load_state_dict(astdp.net.state_dict())
    x, y = (t[:128] for t in load_mnist(args.root, allow_fallback=False, download=False)[0]["train"])
    before = [t.clone() for t in astdp.net.parameters()]
    astdp.train_batch(x, y)
    state = ep.train_state.slots(128)
    ep.relaxer.run(state, ep.learner.phases(x, y), alpha=0.0, fake_on=False)
    grads = ep.learner.estimate(ep.net, state)  # weights, biases, kernels: the parameters' order
    for (name, after), b, g in zip(astdp.net.named_parameters(), before, grads):
        d = (after - b).flatten()
        cos = float(d @ g.flatten() / (d.norm() * g.norm()).clamp_min(1e-12))
        print(f"{name:12s} cos(aSTDP, EP) = {cos:+.3f}")


if __name__ == "__main__":
    main()
