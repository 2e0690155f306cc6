"""The few private names of Lightning that the data-parallel strategy relies on, each with its reason.
These tests fail the day Lightning renames or stops calling one of them, instead of a run misbehaving.

- ``DDPStrategy._setup_model``: torch's DDP refuses a module with no parameter that needs a gradient,
  and aSTDP has none (its weights learn inside the relaxation); ``AstdpDDPStrategy`` returns it unwrapped.
- ``subprocess_script._hydra_subprocess_cmd`` (swapped in ``_configure_launcher``): Lightning's version
  appends ``sys.argv[1:]``, so each process it starts for a ``-m`` multirun job would rerun the whole
  sweep; ours (``launch.job_command``) runs the one job in progress.
"""

from __future__ import annotations

import inspect

from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers import subprocess_script

from astdp.lit.launch import job_command


def test_ddp_strategy_builds_its_model_through_setup_model():
    assert callable(getattr(DDPStrategy, "_setup_model", None))
    assert "self._setup_model(" in inspect.getsource(DDPStrategy)


def test_subprocess_launcher_takes_its_command_from_the_hydra_function_we_replace():
    original = getattr(subprocess_script, "_hydra_subprocess_cmd", None)
    assert callable(original)
    assert list(inspect.signature(original).parameters) == list(inspect.signature(job_command).parameters)
    assert "_hydra_subprocess_cmd(" in inspect.getsource(subprocess_script._SubprocessScriptLauncher)
    assert callable(getattr(DDPStrategy, "_configure_launcher", None))
