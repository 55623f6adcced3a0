"""The model zoo. Each module registers its models with ``deephyperx.registry.register_model``;
importing this package registers them all. Add a model by adding a module and listing it here."""
from models import baselines, fully_connected, hu  # noqa: F401  (imported for registration)
