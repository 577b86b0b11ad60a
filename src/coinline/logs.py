"""Logging set up once at the entry point, with a filter that masks every configured secret value
(defence in depth: secrets are never logged on purpose, this catches foreign text that echoes them)."""

from __future__ import annotations

import logging

from coinline.secrets import Secret, redact


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: tuple[Secret, ...]):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = redact(record.getMessage(), self.secrets)
            record.args = ()
        return True


def setup_logging(secrets: tuple[Secret, ...], *, verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("coinline").setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
