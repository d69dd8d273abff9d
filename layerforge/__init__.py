"""layerforge: build, slim, verify and publish AWS Lambda layers for Python."""

__version__ = "0.1.0"
