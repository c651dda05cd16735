"""jacc: a source-to-source compiler for a subset of the Jac language."""

__version__ = "0.1.0"
