"""Errors the command line turns into one line on stderr and exit status 2."""


class RipuError(ValueError):
    """Bad input: the message says what is wrong and what was expected."""


class ConfigError(RipuError):
    """A params file or override is invalid."""


class DatasetError(RipuError):
    """A dataset root is missing, incomplete or holds unreadable or unexpected files."""
