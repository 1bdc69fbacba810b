"""vision-gmps: Guided Meta-Policy Search for convolutional image policies."""

__version__ = "0.1.0"
