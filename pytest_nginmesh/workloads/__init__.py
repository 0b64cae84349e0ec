"""Local programs that stand in for container images on the embedded cluster (see cluster/local/catalogue)."""
