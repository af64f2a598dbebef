"""load_texts / load_records / load_text on every supported format, and every bad-data error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidCalibrationData
from workers.data import DataSource, load_records, load_table, load_text, load_texts


def test_txt_one_document_per_line_blank_lines_dropped(tmp_path: Path) -> None:
    f = tmp_path / "docs.txt"
    f.write_text(" = Title = \n\n   \nfirst line\nsecond line\n")
    assert load_texts(str(f)) == [" = Title = ", "first line", "second line"]


def test_txt_single_document_and_raw_whole_text(tmp_path: Path) -> None:
    f = tmp_path / "one.txt"
    f.write_text("just one document without a newline")
    assert load_texts(str(f)) == ["just one document without a newline"]
    g = tmp_path / "wiki.txt"
    g.write_text(" \n = A = \n \n body text \n")
    assert load_text(str(g)) == " \n = A = \n \n body text \n"  # as stored: blank lines kept


def test_load_text_joins_other_sources_by_newline(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert load_text(str(f)) == "a\nb"


def test_jsonl_default_and_named_column(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "alpha", "body": "one"}\n\n{"text": "beta", "body": "two"}\n')
    assert load_texts(str(f)) == ["alpha", "beta"]
    assert load_texts(f"{f}:body") == ["one", "two"]
    assert load_records(str(f))[1] == {"text": "beta", "body": "two"}


def test_csv_quoted_fields_and_first_text_column(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text('id,review,stars\n1,"good, really good",5\n2,"bad ""very"" bad",1\n')
    assert load_texts(str(f)) == ["good, really good", 'bad "very" bad']
    rows, columns = load_table(str(f))
    assert columns == ["id", "review", "stars"] and rows[0]["stars"] == "5"


def test_tsv_keeps_stray_quotes(tmp_path: Path) -> None:
    f = tmp_path / "d.tsv"
    f.write_text('sentence\tlabel\n"an odd start\t1\nquote " in the middle\t0\n')
    assert load_texts(str(f)) == ['"an odd start', 'quote " in the middle']


def test_headerless_tsv_gets_index_columns(tmp_path: Path) -> None:
    f = tmp_path / "sts.tsv"
    f.write_text("genre\tfile\t2012\t0001\t5.000\tA man.\tA person.\nx\ty\t2012\t0002\t1.5\tB.\tC.\textra\n")
    rows, columns = load_table(str(f))
    assert columns == [str(i) for i in range(8)]
    assert rows[0]["4"] == "5.000" and rows[1]["6"] == "C." and rows[0]["7"] is None


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"label": [0, 1], "content": ["x y", "z w"]}), f)
    assert load_texts(str(f)) == ["x y", "z w"]
    assert load_records(str(f)) == [{"label": 0, "content": "x y"}, {"label": 1, "content": "z w"}]


def test_save_to_disk_dataset_and_dataset_dict(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    Dataset.from_dict({"text": ["a b", "c d"]}).save_to_disk(str(tmp_path / "single"))
    assert load_texts(str(tmp_path / "single")) == ["a b", "c d"]
    dd = DatasetDict({"train": Dataset.from_dict({"t": ["tr"]}), "test": Dataset.from_dict({"t": ["te"]})})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert load_texts(DataSource(path=str(tmp_path / "dict"), split="test", text_column="t")) == ["te"]
    with pytest.raises(InvalidCalibrationData, match="no split 'valid'.*train"):
        load_texts(DataSource(path=str(tmp_path / "dict"), split="valid"))


def test_hub_dataset_goes_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[Any, ...]] = []

    def fake_load(name: str, config: str | None, split: str) -> Any:
        calls.append((name, config, split))
        return datasets.Dataset.from_dict({"text": ["from the hub", ""]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert load_texts("hf:org/name:cfg@test") == ["from the hub"]
    assert calls == [("org/name", "cfg", "test")]


def test_hub_dataset_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InvalidCalibrationData, match="hf:org/name@train.*offline"):
        load_texts("hf:org/name")


# ------------------------------------------------------------------ bad data


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidCalibrationData, match="nothere.txt: file not found"):
        load_texts(str(tmp_path / "nothere.txt"))


@pytest.mark.parametrize(("name", "content"), [("e.txt", ""), ("e.jsonl", "\n\n"), ("e.tsv", "")])
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(InvalidCalibrationData, match=f"{name}: empty"):
        load_texts(str(tmp_path / name))


def test_header_only_tsv_is_empty(tmp_path: Path) -> None:
    (tmp_path / "h.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(InvalidCalibrationData, match="h.tsv: empty"):
        load_records(str(tmp_path / "h.tsv"))


def test_unknown_column_lists_the_available_ones(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "a", "meta": 1}) + "\n")
    with pytest.raises(
        InvalidCalibrationData, match=r"d.jsonl: unknown column 'body' \(available: text, meta\)"
    ):
        load_texts(f"{f}:body")


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "latin1.txt"
    f.write_bytes("café au lait\n".encode("latin-1"))
    with pytest.raises(InvalidCalibrationData, match="latin1.txt: not UTF-8.*0xe9 at offset 3"):
        load_texts(str(f))


def test_bad_jsonl_line(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(InvalidCalibrationData, match="d.jsonl: line 2 is not JSON"):
        load_texts(str(f))


def test_unsupported_format_and_plain_directory(tmp_path: Path) -> None:
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(InvalidCalibrationData, match="unsupported format '.xlsx'"):
        load_texts(str(tmp_path / "d.xlsx"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(InvalidCalibrationData, match="not one written by datasets' save_to_disk"):
        load_texts(str(tmp_path / "folder"))


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InvalidCalibrationData, match="bad.parquet: not a readable parquet file"):
        load_texts(str(tmp_path / "bad.parquet"))


def test_column_without_text(tmp_path: Path) -> None:
    f = tmp_path / "nums.csv"
    f.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(InvalidCalibrationData, match="nums.csv: no text column"):
        load_texts(str(f))


def test_shared_glue_files(data_dir: Path) -> None:
    """The real files: SST-2 and GLUE STS-B have headers, the original STS Benchmark has none."""
    sst = load_records(str(data_dir / "sst2" / "alps_dev_split.tsv"))
    assert len(sst) == 6735 and set(sst[0]) == {"sentence", "label"}
    glue = load_records(str(data_dir / "stsb" / "dev.tsv"))
    original, columns = load_table(str(data_dir / "stsb" / "original" / "sts-dev.tsv"))
    assert len(glue) == len(original) == 1500
    assert glue[0]["sentence1"] == original[0]["5"] and glue[0]["score"] == original[0]["4"]
    assert len(columns) == 9  # 22 rows carry two extra source fields
