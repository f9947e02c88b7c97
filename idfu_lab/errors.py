"""Errors a user can act on.

Anything raised as :class:`IdfuError` is bad input (a missing file, an unknown key, a malformed line):
the command line prints its one-line message and exits with status 2, without a traceback. Everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class IdfuError(Exception):
    """Bad user input; the message names the file, line or key at fault."""


class ConfigError(IdfuError):
    """A configuration file that cannot be used as it is."""
