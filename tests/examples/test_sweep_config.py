"""The README's sweep config (`examples/sweep.yaml`) reads as YAML and names valid configurations."""

from __future__ import annotations

from pathlib import Path

import yaml

from convert2snn import schemes
from convert2snn.tools.sweep import expand_configs

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "sweep.yaml"


def test_the_example_sweep_config_expands_to_valid_configurations():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["timesteps"] == [1, 2, 4, 8, 16, 32]
    configs = expand_configs(config)
    assert len(configs) == 3 + 2 * 2 and len({c["name"] for c in configs}) == 7
    for cfg in configs:
        options = {k: v for k, v in cfg.items() if k not in ("name", "conversion_type")}
        schemes.create(cfg.get("conversion_type", "rate"), options)  # raises on a bad option
