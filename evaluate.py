"""Test a checkpoint with its saved config: `python evaluate.py ckpt_path=<run>/checkpoints/last.ckpt`.

`test_steps=[20,40,80,160]` sweeps the inference step budget. Writes metrics.json into the Hydra run
folder and prints a one-line summary last.
"""

import hydra
from omegaconf import DictConfig

from astdp.lit.run import evaluate, guarded


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    guarded(evaluate, cfg)


if __name__ == "__main__":
    main()
