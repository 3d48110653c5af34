"""Exceptions the core raises; the Processing layer turns them into QgsProcessingException."""


class SarDespeckleError(Exception):
    """A problem the user can fix (bad input, bad parameter, unwritable output).

    The message is shown to the user as is, so it says what is wrong and what to do.
    """


class Cancelled(SarDespeckleError):
    """The user cancelled the run; nothing was written."""

    def __init__(self, message: str = "Cancelled by the user; no output was written.") -> None:
        super().__init__(message)
