import pytest

from medprune.errors import DataError
from medprune.io.jsonl import read_jsonl, read_texts


def test_reads_records_with_line_numbers(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert read_jsonl(p) == [(1, {"text": "a"}), (3, {"text": "b"})]
    assert read_texts(p) == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty"),
        ('{"text": "a"}\n{"text": \n', r"b\.jsonl:2: invalid JSON"),
        ("[1, 2]\n", r"b\.jsonl:1: expected a JSON object"),
        ('{"txt": "a"}\n', r"b\.jsonl:1: missing field 'text'"),
        ('{"text": 3}\n', r"b\.jsonl:1: field 'text' must be str"),
        ('{"text": "  "}\n', r"b\.jsonl:1: field 'text' is empty"),
    ],
)
def test_errors_name_file_and_line(tmp_path, content, match):
    p = tmp_path / "b.jsonl"
    p.write_text(content)
    with pytest.raises(DataError, match=match):
        read_texts(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_jsonl(tmp_path / "missing.jsonl")
