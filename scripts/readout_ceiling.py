"""How well could a readout do on a net's top hidden layer? Linear readouts fitted to its features.

Trains like ``scripts/probe_conv.py`` (same options; ``--batches 0``: the net as drawn), then relaxes
the first ``--n-train`` digits of the training order and the 512 held-out digits with the inputs
clamped (``--steps`` steps, no learning) and takes the top hidden layer of net_l as features. On them:

- ridge regression onto one-hot labels (least squares, all digits at once), for each ``--ridge``;
- multinomial logistic regression (L-BFGS);
- the one-pass rule the net's readout follows, in the ideal: in batches of 128, ``--lms-steps``
  steps each, ``W += r f (t - clip(W f + c, 0, 1))^T`` (eq (15) with the outputs set to the labels in
  net_l and read without relaxation), at rate ``r`` times the cosine schedule, for each ``--lms``.

The held-out accuracy of each, and the net's own, are printed as JSON. docs/FINDINGS.md section 38:

    python scripts/readout_ceiling.py --root ../shared/data --batches 0 --model '{"pairs": "own"}'
"""

from __future__ import annotations

import json
import math

import torch

from probe_conv import parser, setup, train


def features(system, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(top hidden layer of net_l (B, n), predictions (B,)) after relaxing on ``x`` with the inputs clamped."""
    top = system.topology.slice(system.topology.output_layer - 1)
    feats, preds = [], []
    for i in range(0, len(x), 128):
        state = system.eval_state.slots(min(128, len(x) - i))
        out, _ = system.infer(x[i : i + 128], steps=steps, state=state)
        feats.append(state.s[1][:, top].clone())
        preds.append(out.argmax(1))
    return torch.cat(feats).double(), torch.cat(preds)


def with_bias(f: torch.Tensor) -> torch.Tensor:
    return torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], 1)


def ridge(f, y, fv, yv, lam: float) -> float:
    a, t = with_bias(f), torch.nn.functional.one_hot(y, 10).double()
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1], dtype=a.dtype), a.T @ t)
    return float((with_bias(fv) @ w).argmax(1).eq(yv).double().mean())


def logistic(f, y, fv, yv) -> float:
    a, w = with_bias(f), torch.zeros(f.shape[1] + 1, 10, dtype=f.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=300)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ w, y) + 1e-4 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float((with_bias(fv) @ w.detach()).argmax(1).eq(yv).double().mean())


def one_pass(f, y, fv, yv, rate: float, steps: int) -> float:
    t = torch.nn.functional.one_hot(y, 10).double()
    w, c = torch.zeros(10, f.shape[1], dtype=f.dtype), torch.zeros(10, dtype=f.dtype)
    batches = len(f) // 128
    for b in range(batches):
        r = rate * 0.5 * (1 + math.cos(math.pi * b / batches))
        fb, tb = f[b * 128 : (b + 1) * 128], t[b * 128 : (b + 1) * 128]
        for _ in range(steps):
            err = tb - (fb @ w.T + c).clamp(0, 1)
            w += r * err.T @ fb
            c += r * err.sum(0)
    return float((fv @ w.T + c).argmax(1).eq(yv).double().mean())


def main() -> None:
    p = parser()
    p.add_argument("--n-train", type=int, default=6400, help="digits the readouts are fitted on (the first of the order)")
    p.add_argument("--steps", type=int, default=80, help="relaxation steps per digit for the features")
    p.add_argument("--ridge", default="[0.1, 1.0, 10.0]", help="JSON list of ridge penalties")
    p.add_argument("--lms", default="[3e-4, 1e-3, 3e-3, 1e-2]", help="JSON list of one-pass rates")
    p.add_argument("--lms-steps", type=int, default=40, help="steps per batch of the one-pass rule (the clamped phase)")
    a = p.parse_args()
    system, x, y, order = setup(a)
    if a.batches:
        a.every = a.batches
        train(system, a, x, y, order)
    idx = order[: a.n_train]
    f, _ = features(system, x[idx], a.steps)
    fv, pred = features(system, x[15000:], a.steps)
    yt, yv = y[idx], y[15000:]
    print(json.dumps({
        "hidden": json.loads(a.hidden), "model": json.loads(a.model), "learner": json.loads(a.learner),
        "batches": a.batches, "n_train": a.n_train, "seed": a.seed, "features": f.shape[1],
        "mean_activity": round(float(f.mean()), 3), "net": round(float(pred.eq(yv).double().mean()), 4),
        "ridge": {str(lam): round(ridge(f, yt, fv, yv, lam), 4) for lam in json.loads(a.ridge)},
        "logistic": round(logistic(f, yt, fv, yv), 4),
        "one_pass": {str(r): round(one_pass(f, yt, fv, yv, r, a.lms_steps), 4) for r in json.loads(a.lms)},
    }))


if __name__ == "__main__":
    main()
