"""Domain errors. Each one carries a message a user can act on; the CLI prints it as one line."""


class RtstyleError(Exception):
    """Base class for every error rtstyle reports to the user."""


class InputError(RtstyleError):
    """A missing, unreadable or unsupported input file, or a bad argument value."""


class OutputError(RtstyleError):
    """The output cannot be written."""


class StyleError(RtstyleError):
    """An unknown style name or a malformed blend specification."""


class AdapterError(RtstyleError):
    """An adapter file that is corrupt or does not fit the base model."""


class BackendError(RtstyleError):
    """A backend or device that is not available here."""


class PipelineError(RtstyleError):
    """A pipeline stage failed; the cause is chained."""
