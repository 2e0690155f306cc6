"""Train an aSTDP network (or a backprop baseline) and test it: `python train.py --help`.

Writes metrics.json into the Hydra run folder and prints a one-line summary last.
"""

import hydra
from omegaconf import DictConfig

from astdp.lit.run import guarded, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = guarded(train, cfg)
    return metrics.get(cfg.get("optimized_metric"))  # what a sweeper (hparams_search) maximizes


if __name__ == "__main__":
    main()
