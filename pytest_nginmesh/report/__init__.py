"""Conformance report, allure glue and diagnostics bundles: what a run hands over."""
