"""The error of every reader of recorded inputs (bags, sequence folders, TUM files, intrinsics
files): a ``ValueError`` whose message says what is wrong and where."""


class InputError(ValueError):
    """An input cannot be read as asked; the message says what is wrong."""
