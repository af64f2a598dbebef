"""Fuzzing the calibration and evaluation file readers (workers.data) and the upload validators
(app.services.uploads, app.services.datasets).

Whatever the bytes (raw, or a valid txt, jsonl, csv, tsv, parquet file or `save_to_disk`
directory with mutated fields, other encodings, BOMs, NULs, ragged rows, huge lines, odd
schemas, missing or garbled files), a reader returns rows or raises InvalidCalibrationData
(`invalid_data`), and an upload validator returns a format or raises InvalidRequest /
PayloadTooLarge. An upload the validator passes is then read, and sampled for calibration, by the
worker's code without an unhandled exception. Valid csv and JSON Lines files read back exactly
what was written (fields holding newlines, U+2028, NEL).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import itertools
import json
import shutil
import string
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import ServiceError
from app.services.datasets import FORMATS, SNIFF_BYTES, detect_format
from app.services.uploads import MAX_FILENAME, Upload, receive_file
from core.errors import PareError
from tests import factories
from tests.fuzz import Tally, fuzz
from workers.data import DataSource, build_calibration, load_table, load_text, load_texts

TALLY = Tally("tests/fuzz/test_data_readers.py")
SUFFIXES = [".txt", ".jsonl", ".csv", ".tsv", ".parquet"]
NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_names = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    with TALLY.recording():
        yield


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-data")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return factories.bpe_tokenizer()


def read_all(source: str | DataSource) -> list[Any]:
    """Every reader the worker uses on one source: rows, texts, whole text (InvalidCalibrationData
    allowed, nothing else). Texts, when read, are non-blank strings."""
    results = [TALLY.outcome(partial(read, source), (PareError,), {"invalid_data"})
               for read in (load_table, load_texts, load_text)]
    texts = results[1]
    if isinstance(texts, list):
        assert texts and all(isinstance(t, str) and t.strip() for t in texts)
    return results


def written(scratch: Path, data: bytes, suffix: str) -> Path:
    path = scratch / f"f{next(_names)}{suffix}"
    path.write_bytes(data)
    return path


# ----- strategies: bytes, text, files of each format ------------------------------------------

NASTY = st.sampled_from([
    "\ufeff", "\x00", "\r\n", "\r", "\n", "\u2028", "\u2029", "\x85", "\x0c", "\x1e", '"', "'", "\t",
    ",", "\\", ";", " ", "", "1e5", "-0", "nan", "NaN", "inf", "1" * 5000, "é" * 50, "\U0001f600",
])
CELL = st.one_of(st.text(max_size=12), NASTY, st.from_regex(NUMBER, fullmatch=True))


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with up to three byte-level mutations: truncation, insertion, a flipped byte, a BOM,
    a NUL, a repeated stretch."""
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["truncate", "insert", "flip", "bom", "nul", "repeat"]))
        at = draw(st.integers(0, len(data)))
        if op == "truncate":
            data = data[:at]
        elif op == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        elif op == "flip" and data:
            i = min(at, len(data) - 1)
            data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
        elif op == "bom":
            data = b"\xef\xbb\xbf" + data
        elif op == "nul":
            data = data[:at] + b"\x00" + data[at:]
        elif op == "repeat":
            data = data[:at] + data[max(0, at - 64):at] * 3 + data[at:]
    return data


@st.composite
def encoded(draw: st.DrawFn, text: str) -> bytes:
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    return text.encode(encoding, errors="replace")


@st.composite
def txt_files(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.one_of(st.text(max_size=40), NASTY), max_size=12))
    sep = draw(st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\x0c"]))
    text = sep.join(lines)
    if draw(st.integers(0, 9)) == 0:  # one huge line, past the upload sniffer's window
        text += "word " * draw(st.sampled_from([20_000, 60_000]))
    return draw(mutated(draw(encoded(text))))


JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), NASTY,
)
JSON = st.recursive(JSON_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)


@st.composite
def jsonl_line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["object", "object", "object", "value", "junk", "deep", "bigint", "dupes"]))
    if kind == "object":
        keys = st.sampled_from(["text", "sentence", "label", "x", ""]) | st.text(max_size=6)
        row = draw(st.dictionaries(keys, JSON, max_size=4))
        return json.dumps(row, ensure_ascii=draw(st.booleans()))
    if kind == "value":
        return json.dumps(draw(JSON))
    if kind == "deep":
        n = draw(st.sampled_from([50, 3000, 200_000]))
        return '{"text": ' + "[" * n + "]" * n + "}"
    if kind == "bigint":
        return '{"text": "a", "label": ' + "7" * draw(st.sampled_from([4300, 4301, 20_000])) + "}"
    if kind == "dupes":
        return '{"text": "a", "text": 1, "text": NaN, "label": -Infinity}'
    return draw(st.text(max_size=30))


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(jsonl_line(), max_size=8))
    return draw(mutated(draw(encoded(draw(st.sampled_from(["\n", "\r\n", "\n\n"])).join(lines)))))


@st.composite
def delimited_files(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([",", "\t", ";"]))
    header = draw(st.sampled_from(["names", "numbers", "none"]))
    rows = draw(st.lists(st.lists(CELL, max_size=5), max_size=8))
    if header == "names":
        rows.insert(0, draw(st.lists(st.sampled_from(["text", "sentence", "label", "id", ""]) | CELL,
                                     min_size=1, max_size=5)))
    elif header == "numbers":
        rows.insert(0, draw(st.lists(st.from_regex(NUMBER, fullmatch=True), min_size=1, max_size=5)))
    out = io.StringIO()
    if draw(st.booleans()):
        quoting: Any = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
        terminator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=terminator).writerows(rows)
    else:  # no quoting at all: stray quotes, delimiters and newlines inside fields
        out.write("\n".join(delimiter.join(row) for row in rows))
    return draw(mutated(draw(encoded(out.getvalue()))))


def _arrow_columns() -> dict[str, tuple[Any, st.SearchStrategy[Any]]]:
    import pyarrow as pa

    i64 = st.integers(-(2**63), 2**63 - 1)
    return {
        "string": (pa.string(), st.text(max_size=12)),
        "large_string": (pa.large_string(), CELL),
        "int64": (pa.int64(), i64),
        "float64": (pa.float64(), st.floats()),
        "bool": (pa.bool_(), st.booleans()),
        "binary": (pa.binary(), st.binary(max_size=12)),
        "list": (pa.list_(pa.string()), st.lists(st.text(max_size=4), max_size=3)),
        "struct": (pa.struct([("a", pa.int32()), ("b", pa.string())]),
                   st.fixed_dictionaries({"a": st.integers(-(2**31), 2**31 - 1), "b": st.text(max_size=4)})),
        "map": (pa.map_(pa.string(), pa.int64()), st.lists(st.tuples(st.text(max_size=3), i64), max_size=2)),
        "null": (pa.null(), st.none()),
        "timestamp": (pa.timestamp("us"), i64),  # past year 9999 for most values
        "timestamp_tz": (pa.timestamp("us", tz="Europe/Paris"), i64),
        "date32": (pa.date32(), st.integers(-(2**31), 2**31 - 1)),
        "time64": (pa.time64("us"), st.integers(0, 2**40)),  # past midnight for large values
        "duration": (pa.duration("ms"), i64),
        "decimal": (pa.decimal128(38, 4), st.decimals(allow_nan=False, allow_infinity=False, places=4,
                                                      min_value=-(10**30), max_value=10**30)),
        "dictionary": (pa.dictionary(pa.int32(), pa.string()), st.text(max_size=4)),
    }


@st.composite
def arrow_tables(draw: st.DrawFn) -> Any:
    import pyarrow as pa

    columns = _arrow_columns()
    n_rows = draw(st.integers(0, 6))
    names, arrays = [], []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(sorted(columns)))
        arrow_type, values = columns[kind]
        data = draw(st.lists(st.none() | values, min_size=n_rows, max_size=n_rows))
        if kind == "dictionary":
            array = pa.array(data, type=pa.string()).dictionary_encode()
        else:
            array = pa.array(data, type=arrow_type)
        names.append(draw(st.sampled_from(["text", "sentence", "label", "", "text"]) | st.text(max_size=6)))
        arrays.append(array)
    if not arrays:
        return pa.table({"text": pa.array([], type=pa.string())})
    return pa.Table.from_arrays(arrays, names=names)


@st.composite
def parquet_files(draw: st.DrawFn) -> bytes:
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(draw(arrow_tables()), out,
                   compression=draw(st.sampled_from(["none", "snappy", "gzip", "zstd"])),
                   use_dictionary=draw(st.booleans()), row_group_size=draw(st.sampled_from([1, 3, 1000])))
    return draw(mutated(out.getvalue()))


RAW = st.binary(max_size=2048)
ANY_FILE = st.one_of(RAW, txt_files(), jsonl_files(), delimited_files(), parquet_files())


# ----- the readers ------------------------------------------------------------------------------

@fuzz(120)
@given(data=st.one_of(RAW, txt_files(), jsonl_files(), delimited_files()),
       suffix=st.sampled_from([*SUFFIXES, ".TXT", ".Jsonl", ".json", ""]))
def test_any_bytes_under_any_suffix(scratch: Path, data: bytes, suffix: str) -> None:
    with TALLY.case():
        read_all(str(written(scratch, data, suffix)))


@fuzz(60)
@given(data=txt_files())
def test_txt(scratch: Path, data: bytes) -> None:
    with TALLY.case():
        read_all(str(written(scratch, data, ".txt")))


@fuzz(100)
@given(data=jsonl_files())
def test_jsonl(scratch: Path, data: bytes) -> None:
    with TALLY.case():
        read_all(str(written(scratch, data, ".jsonl")))


@fuzz(100)
@given(data=delimited_files(), suffix=st.sampled_from([".csv", ".tsv"]), column=st.none() | CELL)
def test_csv_and_tsv(scratch: Path, data: bytes, suffix: str, column: str | None) -> None:
    with TALLY.case():
        path = written(scratch, data, suffix)
        read_all(DataSource(path=str(path), text_column=column or None))


@fuzz(80)
@given(data=parquet_files(), column=st.none() | st.sampled_from(["text", "label", ""]))
def test_parquet(scratch: Path, data: bytes, column: str | None) -> None:
    with TALLY.case():
        read_all(DataSource(path=str(written(scratch, data, ".parquet")), text_column=column or None))


SPLIT = st.sampled_from(["train", "test", "validation"]) | st.from_regex(r"[A-Za-z0-9_]{1,8}", fullmatch=True)


@st.composite
def saved_datasets(draw: st.DrawFn, root: Path) -> tuple[Path, str]:
    """A `save_to_disk` directory (a Dataset or a DatasetDict), then one of its files deleted,
    truncated, replaced by random bytes or by JSON of another shape, or flipped in a few bytes."""
    from datasets import Dataset, DatasetDict
    from datasets.table import InMemoryTable

    table = draw(arrow_tables())
    try:
        dataset = Dataset(InMemoryTable(table))
    except Exception:  # noqa: BLE001 - a schema datasets itself will not hold: not what is fuzzed
        dataset = Dataset.from_dict({"text": draw(st.lists(CELL, max_size=4))})
    folder = root / f"d{next(_names)}"
    splits = draw(st.lists(SPLIT, min_size=1, max_size=3, unique=True))
    saved = DatasetDict({s: dataset for s in splits}) if draw(st.booleans()) else dataset
    saved.save_to_disk(str(folder))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(files))
        if not target.exists():
            continue
        op = draw(st.sampled_from(["delete", "truncate", "garbage", "json", "flip"]))
        data = target.read_bytes()
        if op == "delete":
            target.unlink()
        elif op == "truncate":
            target.write_bytes(data[: draw(st.integers(0, len(data)))])
        elif op == "garbage":
            target.write_bytes(draw(RAW))
        elif op == "json":
            target.write_text(json.dumps(draw(JSON)))
        else:
            target.write_bytes(draw(mutated(data)))
    return folder, draw(st.sampled_from(splits) | SPLIT)


@fuzz(40)
@given(data=st.data())
def test_save_to_disk_directories(scratch: Path, data: st.DataObject) -> None:
    with TALLY.case():
        folder, split = data.draw(saved_datasets(scratch))
        read_all(DataSource(path=str(folder), split=split))
        shutil.rmtree(folder, ignore_errors=True)


@fuzz(100)
@given(spec=st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="/"), max_size=30),
    st.builds(lambda user, rest: f"~{user}/{rest}", st.text(string.ascii_letters, max_size=12),
              st.text(max_size=8)),
    st.text(alphabet=string.ascii_letters + ".:", min_size=250, max_size=5000),
    st.builds(lambda s: "hf:" + s, st.text(max_size=30)),
    st.builds(lambda cols: "CSV:" + ":".join(cols), st.lists(st.text(max_size=6), min_size=1, max_size=3)),
))
def test_data_specs(scratch: Path, monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    """Whatever the command-line spec (unknown ~user, a name too long for the file system, a
    column suffix on an existing file), parsing and reading give a source or invalid_data."""
    monkeypatch.chdir(scratch)
    table = scratch / "table.csv"
    if not table.exists():
        table.write_text("text,label\nhello there,1\ngeneral kenobi,0\n")
    with TALLY.case():
        source = TALLY.outcome(lambda: DataSource.parse(spec.replace("CSV", str(table))), (PareError,),
                               {"invalid_data"})
        if isinstance(source, DataSource) and source.path is not None:
            read_all(source)


# ----- round trips: a valid file reads back what was written -----------------------------------

HEADER_CELL = st.text(min_size=1, max_size=8).filter(
    lambda c: c.strip() and not c.startswith("\ufeff") and not _is_number(c))


def _is_number(cell: str) -> bool:
    import re

    return re.match(rf"^\s*{NUMBER}\s*$", cell) is not None


@fuzz(60)
@given(header=st.lists(HEADER_CELL, min_size=1, max_size=4, unique=True), data=st.data())
def test_csv_round_trip(scratch: Path, header: list[str], data: st.DataObject) -> None:
    """Every row csv.writer writes (quoted newlines, U+2028, NEL, form feeds inside fields) reads
    back as written; the old splitlines() reader cut such fields apart."""
    row = st.lists(st.text(max_size=10), min_size=len(header), max_size=len(header)).filter(
        lambda cells: any(c.strip() for c in cells))
    rows = data.draw(st.lists(row, min_size=1, max_size=5))
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])  # rows end in \r\n: a field holding \r or \n is quoted
    with TALLY.case():
        got, columns = load_table(str(written(scratch, out.getvalue().encode(), ".csv")))
        assert columns == header
        assert got == [dict(zip(header, r, strict=True)) for r in rows]


@fuzz(60)
@given(rows=st.lists(st.dictionaries(st.text(max_size=6), st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6), max_size=4), min_size=1, max_size=5))
def test_jsonl_round_trip(scratch: Path, rows: list[dict[str, Any]]) -> None:
    """JSON Lines end at \\n only: an object whose strings hold U+2028 or NEL (json.dumps with
    ensure_ascii=False writes them raw) reads back as written."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with TALLY.case():
        got, _ = load_table(str(written(scratch, text.encode(), ".jsonl")))
        assert got == rows


# ----- the upload validators, then the worker's reader -----------------------------------------

@fuzz(120)
@given(data=ANY_FILE, suffix=st.sampled_from([*SUFFIXES, ".TSV", ".Parquet", ".json", ".exe", ""]))
def test_an_upload_the_validator_passes_is_read_without_a_crash(scratch: Path, tokenizer: Any, data: bytes,
                                                                suffix: str) -> None:
    """detect_format refuses with invalid_request, or passes; a file it passes is stored under the
    worker's name (`<dataset id><suffix>`) and read and sampled for calibration with, at worst,
    invalid_data."""
    with TALLY.case():
        upload = written(scratch, data, ".upload")
        filename = f"my data{suffix}"
        fmt = TALLY.outcome(lambda: detect_format(upload, filename), (ServiceError,), {"invalid_request"})
        if isinstance(fmt, Exception):
            return
        assert fmt == FORMATS[suffix.lower()]
        stored = upload.rename(upload.with_name(f"ds_{upload.stem}{suffix}"))
        read_all(str(stored))
        TALLY.outcome(
            lambda: build_calibration(tokenizer, str(stored), num_samples=2, max_seq_length=8, seed=0),
            (PareError,), {"invalid_data"})


@fuzz(6)
@given(width=st.sampled_from([7_000, 15_000, 40_000]), char=st.sampled_from(["é", "€", "\U0001f600", "a"]))
def test_a_valid_jsonl_larger_than_the_sniffed_head_passes(scratch: Path, width: int, char: str) -> None:
    """The head is cut at SNIFF_BYTES bytes, inside a line; that line is not judged. (The old check
    counted characters, so a multi-byte text kept its cut line and was refused as not JSON.)"""
    line = json.dumps({"text": char * width}, ensure_ascii=False) + "\n"
    data = (line * (SNIFF_BYTES // len(line.encode()) + 3)).encode()
    with TALLY.case():
        assert detect_format(written(scratch, data, ".upload"), "big.jsonl") == "jsonl"


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[str | None, str | None, list[bytes], int]:
    """(content type, content length, body chunks, cap): a multipart body of a few parts with odd
    names, file names and headers, then byte-mutated and cut into chunks at random points."""
    boundary = draw(st.text(string.ascii_letters + string.digits + "'()+_,-./:=?", min_size=1, max_size=70))
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["file", "file", "other", ""]) | st.text(max_size=8))
        filename = draw(st.none() | st.text(max_size=20) | st.sampled_from(
            ["a.txt", "x" * (MAX_FILENAME + 1), "a\x00b.txt", "\u202e.txt", "../../etc/passwd"]))
        disposition = f'form-data; name="{name}"' + ("" if filename is None else f'; filename="{filename}"')
        headers = [f"Content-Disposition: {disposition}".encode("utf-8", "surrogatepass")]
        if draw(st.booleans()):
            headers.append(b"Content-Type: " + draw(st.binary(max_size=20)))
        content = draw(st.binary(max_size=600) | st.sampled_from([b"", b"--" + boundary.encode()]))
        head = b"--" + boundary.encode() + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
        parts.append(head + content + b"\r\n")
    body = b"".join(parts) + (b"--" + boundary.encode() + b"--\r\n" if draw(st.booleans()) else b"")
    body = draw(mutated(body))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    ctype = draw(st.sampled_from([
        f"multipart/form-data; boundary={boundary}", f'multipart/form-data; boundary="{boundary}"',
        "multipart/form-data", "text/plain", "", "multipart/form-data; boundary=",
    ]) | st.none())
    length = draw(st.none() | st.sampled_from([str(len(body)), "0", "-1", "1e9", "9" * 20, "abc"]))
    return ctype, length, chunks, draw(st.sampled_from([0, 16, 1000, 10**6]))


@fuzz(150)
@given(request=multipart_bodies())
def test_multipart_uploads(request: tuple[str | None, str | None, list[bytes], int]) -> None:
    """receive_file returns an Upload whose size and sha256 are those of the bytes written, within
    the cap, with a file name of at most 255 characters and no control characters; or it raises
    invalid_request or payload_too_large."""
    ctype, length, chunks, cap = request

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    dest = io.BytesIO()
    with TALLY.case():
        result = TALLY.outcome(
            lambda: asyncio.run(receive_file(content_type=ctype, content_length=length, stream=stream(),
                                             dest=dest, cap=cap)),
            (ServiceError,), {"invalid_request", "payload_too_large"})
        if isinstance(result, Upload):
            stored = dest.getvalue()
            assert result.size_bytes == len(stored) <= cap
            assert result.sha256 == hashlib.sha256(stored).hexdigest()
            assert 0 < len(result.filename) <= MAX_FILENAME
            assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in result.filename)
