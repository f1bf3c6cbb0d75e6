"""The short tree of fatal errors. The CLI turns each into one line and its exit code.

Anything that is merely missing (no screenshot, a throttled call, Windows without console output)
is not an error: it is an `Artifact` with a reason.
"""

from __future__ import annotations


class DiagnoseError(Exception):
    """Base class: a one-line, user-facing message. Never put a secret in it."""

    exit_code = 4


class UsageError(DiagnoseError):
    """Bad command line or unusable input (missing file, a directory, binary garbage)."""

    exit_code = 2


class FetchError(DiagnoseError):
    """Nothing could be fetched: instance not found, no permission, endpoint unreachable."""

    exit_code = 3


class CredentialsError(FetchError):
    """No usable credentials, or the cloud refused them."""


class RuleError(DiagnoseError):
    """The rule pack is invalid; the message lists every problem with file and line."""

    exit_code = 5

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) in the rule pack"
        super().__init__(head + ":\n" + "\n".join(self.problems))


# Exit codes that are not errors: a verdict was reached.
EXIT_OK = 0  # healthy, uncertain, in-progress, degraded, skipped
EXIT_FAILED = 1  # the verdict (or any instance in a scan) is `failed`
