"""Bundled constitution packs: one YAML file per pack, found by name with importlib.resources."""
