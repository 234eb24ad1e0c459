"""The one error of model loading (its own module: every other module of :mod:`.models` raises it)."""


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded, or it loaded other than its files say."""
