"""Find and remove watermarks over HTTP (`wmseg-serve`): a JSON/image API and a web page.
No Lightning."""

from wmseg.serve.app import create_app

__all__ = ["create_app"]
