"""Errors of the running system (not business rejections: those are ``domain.errors``)."""


class ConfigError(Exception):
    """A setting is missing, malformed or unsafe. The message is one line for the operator."""


class DatabaseUnavailable(Exception):
    """The database cannot be reached or used right now. The message is one line."""
