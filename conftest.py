"""Repository root: the plugin itself is registered through its pytest11 entry point."""

collect_ignore = ["benchmarks", "fixtures", "reports"]
