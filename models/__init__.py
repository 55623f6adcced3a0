"""The model zoo. Each module registers its models with ``deephyperx.registry.register_model``;
importing this package registers them all. Add a model by adding a module and listing it here."""
from models import (baselines, cnn3d, fully_connected, generators, hu, modern, segmentation,  # noqa: F401
                    semi_supervised, spectral_2d)  # imported for registration
