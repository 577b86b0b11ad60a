"""Kubeflow Pipelines components: one folder per step (`<stage>/<name>/component.py` + README.md).

Each component is a thin shell run in the coinline image: it maps its typed parameters onto the
settings (`coinline.settings.load_settings`, parameters winning over the pod environment, which only
supplies secrets and endpoints at run time), calls one library function and writes its outputs.
Nothing here reads the environment at import or compile time.
"""

from components.image import COINLINE_IMAGE, COINLINE_IMAGE_REPOSITORY

__all__ = ["COINLINE_IMAGE", "COINLINE_IMAGE_REPOSITORY"]
