"""`wmseg-serve`: the Hydra entry point of the HTTP server."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from wmseg.errors import ConfigError
from wmseg.predict.cli import build_remover, check_model_config
from wmseg.tasks.checks import require_bool, require_int

log = logging.getLogger(__name__)


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


def serve(cfg: DictConfig) -> None:
    import uvicorn

    from wmseg.serve.app import create_app

    check_serve_config(cfg)
    remover = build_remover(cfg, remove=cfg.remove)
    name = str(cfg.model) if cfg.model else f"bundled ({cfg.precision})"
    app = create_app(remover, model_name=name, max_upload_mb=cfg.max_upload_mb, remove=cfg.remove)
    log.info("wmseg-serve: %s on http://%s:%d", name, cfg.host, cfg.port)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level, workers=1)
