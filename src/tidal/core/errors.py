"""Errors that carry a user-facing message (the CLI prints them and exits with status 2)."""

from __future__ import annotations


class TidalInputError(ValueError):
    """Bad user input: a scenario field, a trace file line, a CLI argument.

    The message names the place (field path or ``file:line``) and what was expected; the CLI
    prints it without a traceback and exits with status 2.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)

    def __reduce__(self):
        # Two-argument constructor: tell pickle how to rebuild it (errors cross process pools).
        return (TidalInputError, (self.where, self.problem))
