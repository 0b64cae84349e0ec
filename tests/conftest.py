"""The project's own tests: pytester drives the plugin in child pytest runs."""

pytest_plugins = ["pytester"]
