"""The project's own tests: pytester drives the plugin in child pytest runs."""

import importlib
import pkgutil

import kubernetes.client.models

pytest_plugins = ["pytester"]

# The kubernetes client imports its model modules lazily, and in-process pytester runs drop every module
# first imported during the run. A model imported inside such a run is then imported again later as a second
# class, which the client's pydantic-validated methods reject ("Input should be ... an instance of
# V1ConfigMap"). Importing them all up front keeps one class per model for the whole session.
for _model in pkgutil.iter_modules(kubernetes.client.models.__path__):
    importlib.import_module(f"{kubernetes.client.models.__name__}.{_model.name}")
