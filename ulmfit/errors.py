"""The one exception type a user should ever see from the command line."""


class UlmfitError(Exception):
    """A problem with the user's input (file, folder, option), reported as one clear line.

    The CLI prints it as ``error: <message>`` and exits with status 2 instead of a traceback.
    """
