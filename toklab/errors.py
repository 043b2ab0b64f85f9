"""The one exception type for mistakes a user can fix: bad paths, bad options, bad data."""


class ToklabError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits with code 2."""
