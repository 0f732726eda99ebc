"""Test helpers shared across test folders, imported as ``tests.helpers.<module>`` (the
repository root is on pytest's ``pythonpath``; fixtures stay in tests/conftest.py):

- ``tiny``: tiny random Llama models and the offline byte-level tokenizer
- ``fixture_data``: small clinical-style data files and a run config over them
- ``tiny_families``: a tiny model of every supported family
- ``variants`` / ``families``: tokenizer and model variants for the GGUF export tests
- ``recover``: data and a pruned tiny model for the recovery tests
- ``search``: a search run config on which the dense tiny model is informative
- ``real_data``: session fixtures (a pytest plugin) for the real default model and data
"""
