"""The model zoo. Each module registers its models with ``deephyperx.registry.register_model``;
importing this package registers them all. Add a model by adding a module and listing it here."""
from . import (baselines, cnn3d, fully_connected, generators, hu, modern, segmentation,  # noqa: F401
               semi_supervised, spectral_2d)  # imported for registration
from . import attention  # noqa: F401  (SSFTT, A2S2K, DBDA)
from . import state_space, transformers  # noqa: F401  (SpectralFormer, GAHT, MambaHSI)
