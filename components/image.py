"""The container image every component runs in: coinline (and kfp, one of its dependencies) baked in.

A constant, never read from the environment: compiled pipelines must not depend on the shell that
compiled them. A release bumps `coinline.__version__`, which retags every component. To target another
registry or tag, `python -m pipelines.compile --image REF --out DIR` rewrites this reference in the
compiled specs (the committed specs always carry the default).
"""

import coinline

COINLINE_IMAGE_REPOSITORY = "ghcr.io/coinline/coinline"
COINLINE_IMAGE = f"{COINLINE_IMAGE_REPOSITORY}:{coinline.__version__}"
