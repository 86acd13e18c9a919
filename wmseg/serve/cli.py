"""`wmseg-serve`: the Hydra entry point of the HTTP server."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from wmseg.config_checks import require_bool, require_int
from wmseg.errors import ConfigError
from wmseg.image_files import allow_pixels_in_process
from wmseg.predict.build import build_remover
from wmseg.predict.checks import check_model_config

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_serve_config(cfg: DictConfig) -> None:
    """ConfigError naming the first bad key, before the model is loaded."""
    check_model_config(cfg)
    require_bool(cfg, "remove")
    require_int(cfg, "port", 0, nullable=False)
    if cfg.port > 65535:
        raise ConfigError(f"port={cfg.port}: give a TCP port, 1-65535 (0: any free one)")
    size = cfg.get("max_upload_mb")
    if isinstance(size, bool) or not isinstance(size, int | float) or size <= 0:
        raise ConfigError(f"max_upload_mb={size}: give the largest upload in MB, e.g. max_upload_mb=50")
    if not isinstance(cfg.get("host"), str) or not cfg.host:
        raise ConfigError(f"host={cfg.get('host')}: give an address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
    require_int(cfg, "max_queue", 1, nullable=False)
    timeout = cfg.get("request_timeout_s")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(
            f"request_timeout_s={timeout}: give the longest wait for the model in seconds, e.g. 120"
        )
    key = cfg.get("api_key")
    if key is not None and (not isinstance(key, str) or len(key) < 8):
        raise ConfigError("api_key: give a string of at least 8 characters (or null: no key)")


def serve(cfg: DictConfig) -> None:
    import uvicorn

    from wmseg.serve.app import create_app

    check_serve_config(cfg)
    allow_pixels_in_process(cfg.get("max_image_pixels"))  # the command owns its process
    remover = build_remover(cfg, remove=cfg.remove)
    name = str(cfg.model) if cfg.model else f"bundled ({cfg.precision})"
    app = create_app(
        remover,
        model_name=name,
        max_upload_mb=cfg.max_upload_mb,
        remove=cfg.remove,
        max_queue=cfg.max_queue,
        request_timeout_s=cfg.request_timeout_s,
        api_key=cfg.api_key,
    )
    log.info("wmseg-serve: %s on http://%s:%d", name, cfg.host, cfg.port)
    if cfg.host not in LOOPBACK:
        log.warning(
            "wmseg-serve listens on %s: anyone who can reach this machine can use it%s",
            cfg.host,
            "" if cfg.api_key else " (set api_key to require a key)",
        )
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level, workers=1)
