"""wmseg: find visible watermarks pixel by pixel, and remove them."""

import os

# Nothing is fetched at run time: albumentations would check PyPI for updates on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
