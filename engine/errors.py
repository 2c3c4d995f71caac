"""User-facing error types.

A :class:`LookalikeError` carries one readable sentence meant for a person (CLI prints it
and exits non-zero; the GUI shows it in a message box). Anything else is a bug.
"""


class LookalikeError(Exception):
    """A problem the user can act on (missing folder, no weights, bad catalog...)."""


class ImageLoadError(LookalikeError):
    """An image file that cannot be decoded; ``reason`` is stored in the catalog."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class CatalogError(LookalikeError):
    """The catalog cannot be opened or is of an incompatible schema."""


class WeightsMissingError(LookalikeError):
    """Backbone weights are not on this machine."""


class CatalogBusyError(LookalikeError):
    """Another process is indexing this collection."""


class CatalogDamagedError(CatalogError):
    """The catalog's SQLite file is damaged; ``lookalike repair`` salvages what it can."""


class UnsafePathError(LookalikeError):
    """A path read from a catalog, dataset or settings file points outside its root."""
