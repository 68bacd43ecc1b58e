"""`atlas`: every flow as one command with sub-commands, taking the same flags as the flow files:
`atlas extract ...` is `python flows/extract.py ...`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "extract": ("flows.extract", "attention maps -> embeddings -> published shards"),
    "cluster": ("flows.cluster", "a published dataset -> clusters, findings and the report"),
    "full": ("flows.full", "extract, then cluster (the offline demo with no flags)"),
    "finetune": ("flows.finetune", "fine-tune or evaluate a QA model on SQuAD v2"),
}


def usage() -> str:
    lines = ["usage: atlas COMMAND [flags]   (atlas COMMAND --help lists the flags)", "", "commands:"]
    return "\n".join(lines + [f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()])


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the named flow's command line; a missing or unknown command prints the usage, status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if not args or args[0] not in COMMANDS:
        print(usage() + (f"\n\natlas: unknown command {args[0]!r}" if args else ""), file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    sys.argv = [f"atlas {args[0]}", *args[1:]]  # the flow's --help and errors name the command
    module.main(args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
