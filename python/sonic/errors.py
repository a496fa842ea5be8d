"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class SonicError(Exception):
    """An error caused by the user's input or environment, reported without a traceback.

    The Rust core's ``sonic._core.CoreError`` (a configuration the core rejects) subclasses it.
    """

    exit_code = 2
