"""Clusters: the port every suite speaks (base.py) and the adapters that make a cluster speak it."""
