"""Errors that describe bad input. The CLI prints them as one paragraph, without a traceback."""


class CifarbenchError(Exception):
    """Expected bad input (a path, a file, an option): the message names it and says how to fix it."""


class ConfigError(CifarbenchError, ValueError):
    """An option value that cannot work."""


class DataError(CifarbenchError):
    """Data that is missing, corrupt, or not in the CIFAR-10 layout."""
