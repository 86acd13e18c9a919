"""`python -m wmseg.predict ...`: the same as `wmseg-predict ...`."""

from wmseg.cli import predict

predict()
