"""The one exception type for mistakes a user can fix: bad paths, bad options, bad data."""


class ToklabError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits with code 2."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type's name), for a one-line error."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
