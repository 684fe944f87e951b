"""zfile: ship files between the machines of a cluster over ZeroMQ."""

__version__ = "0.1.0"
