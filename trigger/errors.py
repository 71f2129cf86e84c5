"""The exceptions the CLI turns into a one-line message and an exit code.

0    success
1    a check failed: a validation gate, or firmware that is not bit-exact with its model
2    bad input or environment (TriggerError)
130  interrupted (Ctrl-C)
143  terminated (SIGTERM)
"""

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class TriggerError(Exception):
    """A problem with the user's input or environment, stated in one line."""


class CheckFailed(Exception):
    """The work completed but one of its verdicts failed (a gate, an exactness check); the
    message names the check and where its details are."""
