"""The container images components run in: coinline (and kfp, one of its dependencies) baked in.
`COINLINE_IMAGE` (images/coinline) for every step; `TRAINER_IMAGE` (images/trainer: the same install with
the torch build chosen at build time, CPU by default, CUDA by build arg) for the steps that fit models.

A constant, never read from the environment: compiled pipelines must not depend on the shell that
compiled them. A release bumps `coinline.__version__`, which retags every component. To target another
registry or tag, `python -m pipelines.compile --image REF --trainer-image REF --out DIR` rewrites these
references in the compiled specs (the committed specs always carry the defaults); the Helm chart's uploader
does the same with the chart's image values (`coinline.kfp_deploy.retarget`, which swaps by repository).
"""

import coinline

# coinline.kfp_deploy.RUNTIME_REPOSITORY / TRAINER_REPOSITORY name the same two (a test keeps them equal)
COINLINE_IMAGE_REPOSITORY = "ghcr.io/coinline/coinline"
COINLINE_IMAGE = f"{COINLINE_IMAGE_REPOSITORY}:{coinline.__version__}"
TRAINER_IMAGE_REPOSITORY = "ghcr.io/coinline/coinline-trainer"
TRAINER_IMAGE = f"{TRAINER_IMAGE_REPOSITORY}:{coinline.__version__}"
