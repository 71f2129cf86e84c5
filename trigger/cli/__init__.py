"""The `trigger` command: a thin layer that parses, calls a stage, and reports.

Heavy imports (TensorFlow, hls4ml, Pythia) live inside the commands so `trigger --help` is
instant. Every `TriggerError`, and every error of the file system itself (read-only, full,
no permission), becomes one line on stderr and exit code 2; a `CheckFailed` (a gate, an
exactness check) exit code 1; Ctrl-C exit code 130. SIGTERM unwinds like Ctrl-C, so a stage
removes its temporary output and stops its workers, and exits 143.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

import click

from trigger import __version__
from trigger.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_INTERRUPTED,
    CheckFailed,
    TriggerError,
)

# TensorFlow's C++ start-up chatter (CUDA/TensorRT probes) is noise to users; set before any
# command imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# Problems of the machine, not of trigger: reported in one line like any bad input.
_FILE_SYSTEM_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except TriggerError as error:
            _fail(str(error))
        except CheckFailed as error:
            _fail(str(error), EXIT_CHECK_FAILED, "trigger")
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED, "trigger")
        except OSError as error:
            if error.errno not in _FILE_SYSTEM_ERRORS:
                raise
            _fail(f"{error.filename or 'file system'}: {error.strerror}")


def _fail(message: str, code: int = EXIT_BAD_INPUT, prefix: str = "trigger: error") -> None:
    click.echo(f"{prefix}: {message}", err=True)
    sys.exit(code)


class _Terminated(SystemExit):
    """The SystemExit a SIGTERM raises, told apart from any other."""


def _exit_terminated(_signum: int, _frame: object) -> None:
    raise _Terminated(128 + signal.SIGTERM)


def _redeliver_a_swallowed_sigterm(unraisable: sys.UnraisableHookArgs) -> None:
    # Python cannot raise out of a weakref callback or a __del__: should SIGTERM arrive while
    # the garbage collector runs one, the exit would be dropped and the command run on. A timer
    # raises it again a moment later, after the collector is done.
    if isinstance(unraisable.exc_value, _Terminated):
        signal.signal(signal.SIGALRM, _exit_terminated)
        signal.setitimer(signal.ITIMER_REAL, 0.01)
    else:
        sys.__unraisablehook__(unraisable)


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind the command like Ctrl-C (finally blocks run) and exit 143."""
    signal.signal(signal.SIGTERM, _exit_terminated)
    sys.unraisablehook = _redeliver_a_swallowed_sigterm


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trigger")
def cli() -> None:
    """Jet-tagging networks from training to bit-exact L1 trigger firmware.

    \b
    Stages (each reads the previous stage's artifacts from disk):
      trigger data generate      Pythia 8 + FastJet jets in the hls4ml LHC-jet layout
      trigger train-and-compress QAT + pruning + distillation from a recipe
      trigger emit-hls           hls4ml project and bit-accurate C++ emulator
      trigger emulate            a firmware's logits on every jet of a file
      trigger validate           firmware vs float model: physics and hardware
      trigger monitor            label-free drift check of a firmware on new jets
      trigger adapt              fine-tune a run to new conditions, footprint frozen
      trigger run                all of the above for one recipe
      trigger sweep              design-space search and scaling laws on Dask
      trigger recipe show        a recipe with every default filled in
    """


def _register() -> None:
    # One line per command group; each module imports its stage lazily inside the command.
    from trigger.cli.adapt import adapt
    from trigger.cli.data import data
    from trigger.cli.emulate import emulate
    from trigger.cli.hls import emit_hls_cmd
    from trigger.cli.monitor import monitor
    from trigger.cli.recipe import recipe
    from trigger.cli.run import run
    from trigger.cli.sweep import sweep
    from trigger.cli.train import train_and_compress_cmd
    from trigger.cli.validate import validate

    for command in (
        data,
        train_and_compress_cmd,
        emit_hls_cmd,
        emulate,
        validate,
        monitor,
        adapt,
        run,
        sweep,
        recipe,
    ):
        cli.add_command(command)


_register()


def main() -> None:
    stop_on_sigterm()
    cli()
