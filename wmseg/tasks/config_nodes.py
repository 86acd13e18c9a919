"""Config nodes made from code, registered in Hydra's ConfigStore when `wmseg.tasks` is
imported, so a default lives in one place.

`data/synth/defaults`: every field of `wmseg.synth.SynthConfig` with the dataclass's own
default (plus its `_target_`). `conf/data/watermark.yaml` takes it from its defaults list,
so `data.synth.<key>=...` overrides any field, and recipes change only what they change.
"""

from __future__ import annotations

import dataclasses

from hydra.core.config_store import ConfigStore


def synth_defaults() -> dict:
    from wmseg.synth import SynthConfig

    fields = {f.name: f.default for f in dataclasses.fields(SynthConfig)}
    # Tuples become YAML lists; `_convert_: all` hands the dataclass plain lists.
    return {
        "_target_": "wmseg.synth.SynthConfig",
        "_convert_": "all",
        **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
    }


def register_config_nodes() -> None:
    ConfigStore.instance().store(group="data/synth", name="defaults", node=synth_defaults())
