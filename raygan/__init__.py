"""raygan: data-efficient GANs, searched and scaled on Ray."""

__version__ = "0.1.0"
