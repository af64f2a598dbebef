"""DataSource.parse: local paths with inline columns, hub specs, paths that contain ':'."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidCalibrationData
from workers.data import DataSource


def test_plain_path_and_inline_columns(tmp_path: Path) -> None:
    f = tmp_path / "train.tsv"
    f.write_text("sentence\tlabel\nok\t1\n")
    assert DataSource.parse(str(f)) == DataSource(path=str(f))
    assert DataSource.parse(f"{f}:sentence") == DataSource(path=str(f), text_column="sentence")
    assert DataSource.parse(f"{f}:sentence:label") == DataSource(
        path=str(f), text_column="sentence", label_column="label"
    )


def test_file_whose_name_contains_a_colon_is_not_split(tmp_path: Path) -> None:
    f = tmp_path / "run:3.txt"
    f.write_text("hello\n")
    assert DataSource.parse(str(f)).path == str(f)
    assert DataSource.parse(f"{f}:text") == DataSource(path=str(f), text_column="text")


def test_split_only_when_the_head_exists_and_the_tail_is_not_a_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.tsv"
    assert DataSource.parse(f"{missing}:col").path == f"{missing}:col"
    f = tmp_path / "a.txt"
    f.write_text("x\n")
    assert DataSource.parse(f"{f}:sub/dir").path == f"{f}:sub/dir"


def test_save_to_disk_directory_is_a_path(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    assert DataSource.parse(f"{folder}:text") == DataSource(path=str(folder), text_column="text")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "hf:wikitext:wikitext-2-raw-v1@test#text",
            DataSource(hub_id="wikitext", config="wikitext-2-raw-v1", split="test", text_column="text"),
        ),
        ("hf:org/name", DataSource(hub_id="org/name")),
        (
            "hf:glue:sst2@validation#sentence:label",
            DataSource(
                hub_id="glue", config="sst2", split="validation", text_column="sentence", label_column="label"
            ),
        ),
        ("hf:org/name@test", DataSource(hub_id="org/name", split="test")),
    ],
)
def test_hub_specs(spec: str, expected: DataSource) -> None:
    assert DataSource.parse(spec) == expected


def test_describe_names_the_source() -> None:
    assert (
        DataSource(hub_id="glue", config="sst2", split="validation").describe() == "hf:glue:sst2@validation"
    )
    assert DataSource(path="/x/y.txt").describe() == "/x/y.txt"


@pytest.mark.parametrize("spec", ["", "   ", "hf:"])
def test_empty_specs_are_refused(spec: str) -> None:
    with pytest.raises(InvalidCalibrationData):
        DataSource.parse(spec)
