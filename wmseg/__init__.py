"""wmseg: find visible watermarks pixel by pixel, and remove them."""

__version__ = "0.1.0"
