"""Print the resolved config once as a rich tree (and keep a copy in the run dir)."""

from __future__ import annotations

from pathlib import Path

import rich
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf

from ragdistill.runtime.distributed import is_global_zero

FIRST = ("data", "candidates", "retriever", "teacher", "loss", "datamodule", "trainer", "index", "evaluation")


def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    """Show each top-level group as a branch, pipeline groups first, in data-flow order (global rank 0 only)."""
    if not is_global_zero():  # the other ranks of a DDP run run the same command: one tree is enough
        return
    tree = rich.tree.Tree("CONFIG", style="bold")
    keys = [k for k in FIRST if k in cfg] + [k for k in cfg if k not in FIRST]
    for key in keys:
        branch = tree.add(str(key), style="bold cyan")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to is not None:
        with save_to.open("w") as file:
            rich.print(tree, file=file)
