"""The aerial segmentation models (family ``segmentation``, run by ``main.py segment``): SegNet and
its distance-transform multitask variant (:mod:`models.segnet`), FuseNet, V-FuseNet and late fusion
by residual correction (:mod:`models.segnet_fusion`). Importing this module registers them and
their training steps (:mod:`deephyperx.segmentation_steps`)."""
from deephyperx import segmentation_steps  # noqa: F401  (registers the steps the models name)
from . import segnet, segnet_fusion  # noqa: F401  (imported for registration)
