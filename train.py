"""Train an aSTDP network (or a backprop baseline) and test it: `python train.py --help`.

Writes metrics.json into the Hydra run folder and prints a one-line summary last.
"""

import hydra
from omegaconf import DictConfig

import astdp.lit.rundir  # noqa: F401 (the run folder's resolver, before Hydra composes)
from astdp.lit.launch import ranks


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with ranks(cfg):  # a data-parallel run's other processes start now and import while this one does
        from astdp.lit.run import guarded, train  # torch and Lightning: after the start of the others

        metrics = guarded(train, cfg)
    return metrics.get(cfg.get("optimized_metric"))  # what a sweeper (hparams_search) maximizes


if __name__ == "__main__":
    main()
