"""metastat: predict whether a cancer will spread, from expression, slides and clinical data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metastat")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
