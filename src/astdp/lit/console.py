"""What a run prints: the model summary without a FLOPs column, and no third-party tips."""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.utilities.model_summary.model_summary import get_formatted_model_size, get_human_readable_count


class _NoTips(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger, printed on every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_NoTips())


class ParamSummary(ModelSummary):
    """The module's parts and their parameter counts. Lightning's own summary adds a FLOPs column
    and total, counted by running ``forward`` on the module's ``example_input_array``; the modules
    here have none (the relaxation is no ``forward`` pass), so they read 0."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0,
                  **summarize_kwargs: Any) -> None:
        from rich import get_console
        from rich.table import Table

        columns = dict(summary_data)
        table = Table(header_style="bold magenta")
        for name in ("Name", "Type", "Params"):
            table.add_column(name, justify="right" if name == "Params" else "left")
        for row in zip(columns["Name"], columns["Type"], columns["Params"]):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        count = lambda n: get_human_readable_count(int(n)).strip()  # noqa: E731
        console.print(f"Params: {count(total_parameters)} ({get_formatted_model_size(model_size)} MB), "
                      f"{count(trainable_parameters)} of them trained by gradients")
