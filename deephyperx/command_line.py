"""What the command lines of ``main.py``, ``main.py generate`` and ``main.py segment`` share: an
argument parser whose errors are one line, the optional monitors (visdom, TensorBoard) their flags
ask for (declared in :class:`deephyperx.shared_settings.Monitoring`), and the exit statuses."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from deephyperx.disk import NO_SPACE, DiskFullError
from deephyperx.errors import UserError
from deephyperx.monitor import Monitor


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), raised as :class:`UserError` (exit
    status 2 through main.py) and pointing at ``help_hint``."""

    def __init__(self, *args, help_hint: str = "python main.py --help", **kwargs):
        super().__init__(*args, **kwargs)
        self.help_hint = help_hint

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {self.help_hint})")


def monitor_factory(args: argparse.Namespace) -> Optional[Callable[[int], list[Monitor]]]:
    """Per-seed optional monitors (visdom, TensorBoard) from the flags; None if there are none."""
    factories: list[Callable[[], Monitor]] = []
    if args.tensorboard:
        from deephyperx.tensorboard_monitor import TensorBoardMonitor

        TensorBoardMonitor(args.tensorboard)  # fail now, with one line, if tensorboard is missing
        factories.append(lambda: TensorBoardMonitor(args.tensorboard))
    if not args.no_visdom:
        from deephyperx.visdom_monitor import VisdomMonitor, visdom_installed, visdom_reachable

        if args.visdom and not visdom_installed():
            raise UserError("--visdom needs the visdom package: run scripts/setup.sh (see docs/MONITORING.md)")
        if visdom_installed() and (args.visdom or visdom_reachable(args.visdom_server, args.visdom_port)):
            username = args.visdom_username or os.environ.get("VISDOM_USERNAME")
            password = args.visdom_password or os.environ.get("VISDOM_PASSWORD")
            factories.append(lambda: VisdomMonitor(server=args.visdom_server, port=args.visdom_port,
                                                   username=username, password=password))
            print(f"visdom: plotting to {args.visdom_server}:{args.visdom_port}", file=sys.stderr)
    if not factories:
        return None
    return lambda seed: [make() for make in factories]


def redact_secrets(argv: Sequence[str]) -> list[str]:
    """The command line as recorded in reports, with the visdom password replaced by ***."""
    shown, hide_next = [], False
    for arg in argv:
        if hide_next:
            shown.append("***")
            hide_next = False
        elif arg.startswith("--visdom_password="):
            shown.append("--visdom_password=***")
        else:
            shown.append(arg)
            hide_next = arg == "--visdom_password"
    return shown


def run_with_exit_status(command: Callable[[list[str]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Run a command line (``sys.argv[1:]`` when ``argv`` is None): a :class:`UserError` becomes one
    ``error:`` line and status 2, an interrupt a hint to resume and status 130."""
    try:
        return command(list(sys.argv[1:] if argv is None else argv))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (`main.py list | head`): stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as error:  # after BrokenPipeError, which is an OSError too
        if error.errno not in NO_SPACE:
            raise
        where = Path(error.filename).parent if error.filename else Path.cwd()
        print(f"error: {DiskFullError(where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
