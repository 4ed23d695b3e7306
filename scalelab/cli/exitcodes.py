"""Exit codes of the ``scalelab`` command."""

from typing import NewType

ExitCode = NewType("ExitCode", int)

OK = ExitCode(0)
FAILED = ExitCode(1)  # the command could not do what was asked; the message says why
USAGE = ExitCode(2)  # argparse's own code for bad arguments
CHECKS_FAILED = ExitCode(3)  # an experiment ran, and at least one of its checks failed (see its report)
INTERRUPTED = ExitCode(130)
