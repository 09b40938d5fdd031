"""Method families: each wires its methods to data, models and evaluation, and states itself as a
raygan.registry.Family (``FAMILY``)."""
