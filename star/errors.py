"""Named errors for problems the user can fix; the CLI prints them as one line, exit code 2."""


class StarError(Exception):
    """Base of every user-facing error."""


class ConfigError(StarError):
    """A bad config file, key or value."""


class DataError(StarError):
    """Missing or malformed data: folders, files, lines, fields, labels."""
