"""preflight: the first step of every pipeline. Checks what the run needs from its deployment before any
step touches the lake (`coinline.preflight`): the Kubernetes Secret and ConfigMap the steps read exist in
the pod's namespace (the pipelines mount both into this pod as optional volumes), the credentials the
settings need are set, the lake answers, the providers answer (not on the replay venue, not for pipelines
that call none) and the Ray cluster answers when training fans out onto one. Fails with one line naming
everything that is missing."""

from kfp import dsl

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def preflight(
    object_store_url: str,
    secret_name: str,
    config_map_name: str,
    venue: str = "auto",
    providers: bool = True,
    ray_address: str = "",
) -> str:
    """Returns the one-line summary of what was checked (and skipped)."""
    from coinline import preflight as checks
    from coinline.step_env import step_settings

    settings = step_settings({"OBJECT_STORE_URL": object_store_url, "COINLINE_VENUE": venue})
    try:
        return checks.require(settings, secret_name=secret_name, config_map_name=config_map_name,
                              providers=providers, ray_address=ray_address)
    except checks.PreflightError as exc:
        raise SystemExit(str(exc)) from None  # the one line, no traceback
