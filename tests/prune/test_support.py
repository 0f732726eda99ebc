"""``medprune support``: families x methods, from the same registry the engine checks."""

from medprune.cli import main
from medprune.prune.arch import ALL_METHODS, supported_families


def test_support_lists_every_family_and_method(capsys):
    assert main(["support"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[1 : 1 + len(ALL_METHODS)] == list(ALL_METHODS)
    rows = {line.split()[0]: line.split()[1 : 1 + len(ALL_METHODS)] for line in lines[1:]}
    assert set(rows) == set(supported_families())
    assert {"gemma3_text", "gemma3", "qwen3", "llama"} <= set(rows)
    for model_type, family in supported_families().items():
        assert rows[model_type] == ["yes" if m in family.methods else "-" for m in ALL_METHODS]
