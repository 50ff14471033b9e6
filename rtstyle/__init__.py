"""rtstyle: real-time video and webcam style transfer.

Importing the package loads no model and touches no device; see `rtstyle.api` for
the Python entry points and `rtstyle.cli` for the command line.
"""

__version__ = "0.1.0"
