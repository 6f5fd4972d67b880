"""One downloaded machine-readable file -> Parquet tables, at memory that does not grow
with its size: `.json`, `.json.gz` (one or several gzip members) or `.zip` (every JSON
member, each its own document).

Remote provider references (v1 `location`) are fetched once per URL; one that cannot be
fetched or read is a `problems` row of the file, not a failure. A document that is not
well-formed JSON, or a gzip/zip that ends early or is corrupt, fails the file with the
byte offset reached and what was expected (`MrfError`); the caller discards the partial
tables.
"""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from biomarkerflow.plugins.price_transparency.flatten import (
    EVERYTHING,
    HEADER_FIELDS,
    STREAMED,
    FileSummary,
    Filters,
    Flattener,
    SchemaProblem,
)
from biomarkerflow.plugins.price_transparency.records import ProviderGroup
from biomarkerflow.plugins.price_transparency.scan import JsonStructureError, scan
from biomarkerflow.plugins.price_transparency.tables import TableSink

FETCH_TIMEOUT_SECONDS = 30.0
GZIP_MAGIC = b"\x1f\x8b"
COUNTS = (
    "in_network_items",
    "prices",
    "provider_group_rows",
    "allowed_amount_rows",
    "filtered_items",
    "skipped_elements",
    "problems",
)


class MrfError(ValueError):
    """The file cannot be read as machine-readable JSON: where (`offset` in the named
    document's JSON text) and what was expected."""

    def __init__(self, document: str, offset: int | None, message: str) -> None:
        where = f"{document}, byte {offset}" if offset is not None else document
        super().__init__(f"{where}: {message}")
        self.document = document
        self.offset = offset
        self.message = message


class RemoteGroups(msgspec.Struct):
    provider_groups: list[ProviderGroup] = []


Fetch = Callable[[str], bytes]


def fetch_url(url: str) -> bytes:
    """A remote provider reference's bytes (http, https or file URLs)."""
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as answer:  # noqa: S310 - the file names it
        return bytes(answer.read())


@dataclass
class Extracted:
    tables: dict[str, Path]
    documents: dict[str, FileSummary] = field(default_factory=dict)


def extract(
    path: Path, folder: Path, *, filters: Filters = EVERYTHING, strict: bool = False, fetch: Fetch = fetch_url
) -> Extracted:
    """Flatten every JSON document in `path` into `<folder>/<table>.parquet`."""
    sink = TableSink(folder)
    result = Extracted(tables={})
    remote = _RemoteReferences(fetch)
    for name, stream in documents(path):
        sink.start_document(name)
        flattener = Flattener(sink, filters, strict)
        try:
            with stream:
                for part in scan(stream, STREAMED):
                    flattener.feed(part)
                flattener.finish()
                flattener.summary.json_bytes = stream.tell()  # uncompressed: gzip and zip count their output
        except SchemaProblem as exc:
            raise MrfError(name, exc.offset, exc.message) from None
        except JsonStructureError as exc:
            _raise_earlier_problem(flattener, name)
            raise MrfError(name, exc.offset, exc.message) from None
        except (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile) as exc:
            _raise_earlier_problem(flattener, name)
            raise MrfError(
                name, None, f"the compressed data is corrupt or ends early (truncated download?): {exc}"
            ) from None
        remote.resolve(flattener)
        result.documents[name] = flattener.summary
    result.tables = sink.close()
    _write_files_table(folder / "files.parquet", result.documents, sink)
    result.tables["files"] = folder / "files.parquet"
    return result


def _raise_earlier_problem(flattener: Flattener, document: str) -> None:
    """In strict mode, a schema problem of an element read before the document broke is
    the first error, and the one to report (the C path decodes elements in batches)."""
    try:
        flattener.finish()
    except SchemaProblem as exc:
        raise MrfError(document, exc.offset, exc.message) from None


def documents(path: Path) -> Iterator[tuple[str, BinaryIO]]:
    """Each JSON document of the file: the file itself, its gzip content, or each JSON
    (or .json.gz) member of a zip, in the archive's order."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                lower = info.filename.lower()
                if info.is_dir() or not lower.endswith((".json", ".json.gz")):
                    continue
                member = archive.open(info)
                yield info.filename, gzip.GzipFile(fileobj=member) if lower.endswith(".gz") else member  # type: ignore[misc]
        return
    with open(path, "rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    stream = gzip.open(path, "rb") if compressed else open(path, "rb")  # noqa: SIM115 - closed by the caller
    yield path.name, cast(BinaryIO, stream)


class _RemoteReferences:
    """v1 provider references given by URL: each URL fetched once per file, its groups
    added under the reference's id; a failure is a problem row naming the URL."""

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self.fetched: dict[str, list[ProviderGroup] | str] = {}

    def resolve(self, flattener: Flattener) -> None:
        for ref, url in flattener.summary.remote_references:
            groups = self.fetched.get(url)
            if groups is None:
                groups = self.fetched[url] = self._groups(url)
            if isinstance(groups, str):
                flattener.problem(-1, "provider_references", None, "remote reference", f"{ref}: {url}: {groups}")
            else:
                flattener.add_remote_groups(ref, groups)

    def _groups(self, url: str) -> list[ProviderGroup] | str:
        try:
            return msgspec.json.decode(self.fetch(url), type=RemoteGroups).provider_groups
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            return f"unreachable: {getattr(exc, 'reason', exc)}"
        except msgspec.DecodeError as exc:
            return f"not a provider reference file: {exc}"


def _write_files_table(path: Path, summaries: dict[str, FileSummary], sink: TableSink) -> None:
    """One row per document: who published it, for which plan, and how many of each."""
    rows: dict[str, list[object]] = {"document": [], **{name: [] for name in HEADER_FIELDS}}
    rows |= {name: [] for name in COUNTS}
    for document, summary in summaries.items():
        rows["document"].append(document)
        for name in HEADER_FIELDS:
            value = summary.header.get(name)
            rows[name].append(None if value is None else str(value))
        counts = sink.document_rows.get(document, {})
        rows["in_network_items"].append(counts.get("in_network", 0))
        rows["prices"].append(counts.get("prices", 0))
        rows["provider_group_rows"].append(counts.get("provider_groups", 0))
        rows["allowed_amount_rows"].append(counts.get("allowed_amounts", 0))
        rows["filtered_items"].append(summary.filtered)
        rows["skipped_elements"].append(sum(summary.skipped.values()))
        rows["problems"].append(summary.problems)
    pq.write_table(pa.table(rows), path)
