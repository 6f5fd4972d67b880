"""The tables a machine-readable file becomes, and a sink that writes them as they grow.

Rows are gathered column by column and written as Parquet row groups of `ROWS_PER_GROUP`
rows, so memory holds one row group per table whatever the file's size. Amounts are
decimals (`AMOUNT`: 38 digits, 18 after the point: exact for every published rate);
identifiers (codes, NPIs, TINs, provider group ids) are text exactly as published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

AMOUNT = pa.decimal128(38, 18)
TEXTS = pa.list_(pa.string())
ROWS_PER_GROUP = 32 * 1024
# The large tables are written in runs of this many rows, each sorted by billing code (in
# document order within a code) and cut into row groups: the row groups' min/max
# statistics then let a query for one code skip most of the file (benchmarks/README.md
# has the measurement), at memory of one run.
ROWS_PER_RUN = 8 * ROWS_PER_GROUP
CLUSTERED_BY = {"in_network": "billing_code", "prices": "billing_code", "allowed_amounts": "billing_code"}

# Every table starts with the JSON document its rows come from (a zip holds several).
DOCUMENT = pa.field("document", pa.string())
ROW_SCHEMAS: dict[str, pa.Schema] = {
    "in_network": pa.schema(
        [
            ("item", pa.int64()),
            ("negotiation_arrangement", pa.string()),
            ("name", pa.string()),
            ("billing_code_type", pa.string()),
            ("billing_code_type_version", pa.string()),
            ("billing_code", pa.string()),
            ("description", pa.string()),
            ("severity_of_illness", pa.string()),
            ("bundled_codes", pa.string()),  # JSON text: [{billing_code_type, billing_code, ...}]
            ("covered_services", pa.string()),
            ("negotiated_rates", pa.int64()),
            ("prices", pa.int64()),
        ]
    ),
    "prices": pa.schema(
        [
            ("item", pa.int64()),
            ("rate", pa.int64()),
            ("price", pa.int64()),
            ("billing_code_type", pa.string()),
            ("billing_code", pa.string()),
            ("provider_refs", TEXTS),
            ("negotiated_type", pa.string()),
            ("negotiated_rate", AMOUNT),
            ("expiration_date", pa.string()),
            ("billing_class", pa.string()),
            ("setting", pa.string()),
            ("service_code", TEXTS),
            ("billing_code_modifier", TEXTS),
            ("additional_information", pa.string()),
        ]
    ),
    "provider_groups": pa.schema(
        [
            ("provider_ref", pa.string()),
            ("source", pa.string()),  # references | inline | remote | file
            ("group", pa.int64()),
            ("npi", pa.string()),
            ("tin_type", pa.string()),
            ("tin_value", pa.string()),
            ("business_name", pa.string()),
            ("network_name", TEXTS),
        ]
    ),
    "allowed_amounts": pa.schema(
        [
            ("item", pa.int64()),
            ("name", pa.string()),
            ("billing_code_type", pa.string()),
            ("billing_code_type_version", pa.string()),
            ("billing_code", pa.string()),
            ("description", pa.string()),
            ("tin_type", pa.string()),
            ("tin_value", pa.string()),
            ("billing_class", pa.string()),
            ("setting", pa.string()),
            ("service_code", TEXTS),
            ("allowed_amount", AMOUNT),
            ("billing_code_modifier", TEXTS),
            ("billed_charge", AMOUNT),
            ("npi", pa.string()),
        ]
    ),
    "table_of_contents": pa.schema(
        [
            ("entry", pa.int64()),
            ("plan_name", pa.string()),
            ("plan_id_type", pa.string()),
            ("plan_id", pa.string()),
            ("plan_market_type", pa.string()),
            ("plan_sponsor_name", pa.string()),
            ("file_kind", pa.string()),  # in-network | allowed-amount
            ("description", pa.string()),
            ("location", pa.string()),
        ]
    ),
    "problems": pa.schema(
        [
            ("offset", pa.int64()),
            ("section", pa.string()),
            ("element", pa.int64()),
            ("kind", pa.string()),
            ("message", pa.string()),
        ]
    ),
}
SCHEMAS = {name: pa.schema([DOCUMENT, *schema]) for name, schema in ROW_SCHEMAS.items()}


class TableSink:
    """Rows gathered per table (column lists from the slow path, Arrow columns from the
    fast one), written to `<folder>/<table>.parquet` a row group at a time."""

    def __init__(self, folder: Path, rows_per_group: int = ROWS_PER_GROUP, rows_per_run: int | None = None) -> None:
        self.folder = folder
        self.rows_per_group = rows_per_group
        self.rows_per_run = rows_per_run or ROWS_PER_RUN
        self.columns: dict[str, dict[str, list[Any]]] = {
            name: {field.name: [] for field in schema} for name, schema in ROW_SCHEMAS.items()
        }
        self.document = ""
        self.document_rows: dict[str, dict[str, int]] = {}
        self._pending: dict[str, list[pa.RecordBatch]] = {name: [] for name in SCHEMAS}
        self._writers: dict[str, pq.ParquetWriter] = {}

    def start_document(self, name: str) -> None:
        """The rows from now on come from document `name` (a file, or a member of a zip)."""
        for table in SCHEMAS:
            self._gather(table)
        self.document = name

    def added(self, table: str, count: int = 1) -> None:
        """`count` rows were appended to `table`'s columns; write a row group when it is full."""
        self._count(table, count)
        if len(next(iter(self.columns[table].values()))) >= self.rows_per_group:
            self._gather(table)

    def append(self, table: str, arrays: list[pa.Array]) -> None:
        """Rows as Arrow columns (in `ROW_SCHEMAS` order), after the rows already added."""
        self._gather(table)
        self._pend(table, self._batch(table, arrays))
        self._count(table, len(arrays[0]))

    def close(self) -> dict[str, Path]:
        """Write what is left; every table's file (an empty one for a table without rows)."""
        for table in SCHEMAS:
            self._gather(table)
            self._write(table, force=table not in self._writers)
        for writer in self._writers.values():
            writer.close()
        return {table: self.folder / f"{table}.parquet" for table in SCHEMAS}

    def _count(self, table: str, rows: int) -> None:
        self.document_rows.setdefault(self.document, dict.fromkeys(SCHEMAS, 0))[table] += rows

    def _gather(self, table: str) -> None:
        """The column lists into a pending batch."""
        columns = self.columns[table]
        if not next(iter(columns.values())):
            return
        arrays = [_array(columns[f.name], f.type) for f in ROW_SCHEMAS[table]]
        self._pend(table, self._batch(table, arrays))
        for values in columns.values():
            values.clear()

    def _batch(self, table: str, arrays: list[pa.Array]) -> pa.RecordBatch:
        documents = pa.repeat(pa.scalar(self.document, pa.string()), len(arrays[0]))
        return pa.RecordBatch.from_arrays([documents, *arrays], schema=SCHEMAS[table])

    def _pend(self, table: str, batch: pa.RecordBatch) -> None:
        self._pending[table].append(batch)
        limit = self.rows_per_run if table in CLUSTERED_BY else self.rows_per_group
        if sum(b.num_rows for b in self._pending[table]) >= limit:
            self._write(table)

    def _write(self, table: str, force: bool = False) -> None:
        """The pending rows as row groups, sorted first for a clustered table (an empty
        file when `force` and none)."""
        pending, self._pending[table] = self._pending[table], []
        if not pending and not force:
            return
        rows = pa.Table.from_batches(pending, schema=SCHEMAS[table])
        if table in CLUSTERED_BY and rows.num_rows:
            # A stable sort: within a code, rows keep the order the document gives them.
            rows = rows.take(pc.sort_indices(rows, [(CLUSTERED_BY[table], "ascending")]))
        writer = self._writers.get(table)
        if writer is None:
            writer = self._writers[table] = pq.ParquetWriter(self.folder / f"{table}.parquet", SCHEMAS[table])
        writer.write_table(rows, row_group_size=self.rows_per_group)


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    if pa.types.is_decimal(kind):
        # Exact: the published digits, parsed by Arrow; a value that does not fit raises.
        return pa.array(values, pa.string()).cast(kind)
    return pa.array(values, kind)
