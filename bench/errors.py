"""The one exception the command line turns into a one-line error and exit code 2."""


class UsageError(ValueError):
    """Bad input from the user: an unknown model, a malformed list, an impossible size."""
