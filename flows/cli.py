"""`atlas`: every flow as one command with sub-commands, taking the same flags as the flow files:
`atlas extract ...` is `python flows/extract.py ...`. The flags are parsed and the inputs checked
(tasks.preflight) before the flow's module, Prefect or torch is imported: a bad input ends at once, one line on
stderr, status 2."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pydantic import BaseModel

from tasks.cli import INPUT_ERROR_STATUS, configs_from_args
from tasks.config import ClusterConfig, CompareConfig, ExtractConfig, FinetuneConfig, ImportanceConfig
from tasks.errors import InputError
from tasks.preflight import (
    check_cluster, check_compare, check_extract, check_finetune, check_full, check_importance,
)


class Command(NamedTuple):
    module: str
    about: str
    configs: tuple[type[BaseModel], ...]
    check: Callable[..., None]
    exclude: tuple[str, ...] = ()


COMMANDS = {
    "extract": Command("flows.extract", "attention maps -> embeddings -> published shards", (ExtractConfig,),
                       check_extract),
    "cluster": Command("flows.cluster", "a published dataset -> clusters, findings and the report", (ClusterConfig,),
                       check_cluster),
    "full": Command("flows.full", "extract, then cluster (the offline demo with no flags)",
                    (ExtractConfig, ClusterConfig), check_full, ("dataset", "newest")),
    "finetune": Command("flows.finetune", "fine-tune or evaluate a QA model on SQuAD v2", (FinetuneConfig,),
                        check_finetune),
    "compare": Command("flows.compare", "two datasets of the same features -> what changed, head by head",
                       (CompareConfig,), check_compare),
    "importance": Command("flows.importance", "which heads matter to a QA model's answers: gradient, ablation, pruning",
                          (ImportanceConfig,), check_importance),
}


def usage() -> str:
    lines = ["usage: atlas COMMAND [flags]   (atlas COMMAND --help lists the flags)", "", "commands:"]
    return "\n".join(lines + [f"  {name:<10} {command.about}" for name, command in COMMANDS.items()])


def main(argv: Sequence[str] | None = None) -> int:
    """Parses and checks a command's flags, then runs its flow; a missing or unknown command prints the usage,
    status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if not args or args[0] not in COMMANDS:
        print(usage() + (f"\n\natlas: unknown command {args[0]!r}" if args else ""), file=sys.stderr)
        return INPUT_ERROR_STATUS
    command, flags = COMMANDS[args[0]], args[1:]
    sys.argv = [f"atlas {args[0]}", *flags]  # --help and flag errors name the command
    configs = configs_from_args(command.configs, command.about, flags, command.exclude)
    try:
        command.check(*configs)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return INPUT_ERROR_STATUS
    importlib.import_module(command.module).main(flags, checked=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
