"""dsrpipe: batch dynamical systems reconstruction with piecewise-linear RNNs."""

__version__ = "0.1.0"


class DsrpipeError(Exception):
    """A problem with user input or a run that the user can act on."""
