"""Errors a person can act on.

Every problem caused by the user's input (a flag, a file, a checkpoint) raises
:class:`UserError`. The command line prints its one-line message and exits with
status 2, without a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names the value and says what to do."""


class DataNotFoundError(UserError):
    """A scene's files are missing: the message says which files, where, and how to get them."""
