"""The `price-transparency` workflow type: what the platform calls (see `WorkflowType`).

A study config of this type:

    study: plan-rates-2026-01
    workflow: price-transparency
    data:
      location: s3://mrf-bucket/2026-01/        # *.json, *.json.gz and *.zip by default
    price_transparency:
      billing_codes: ["27447", "99213"]          # optional: only these codes
      npis: []                                   # optional: only these providers
      tins: []                                   # optional: only these tax ids
      strict: false                              # true: a schema violation fails the file

Jobs run in the platform's own environment (no pinned package). Each file becomes the
tables of `tables.py` plus `files` (one row per JSON document, with its counts).
"""

from __future__ import annotations

import contextlib
import gzip
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field

from biomarkerflow.config.schema import DataConfig, StudyConfig
from biomarkerflow.plugins.contract import UNCOMPRESSED_BYTES, Problem, RunOutput, StepError, WorkflowType
from biomarkerflow.storage import store

if TYPE_CHECKING:
    from biomarkerflow.plugins.price_transparency.flatten import FileSummary
    from biomarkerflow.storage.store import FileEntry

STEP = "FlattenMachineReadableFile"
HEADER_BYTES = 64 * 1024
PATTERNS = ["**/*.json", "**/*.json.gz", "**/*.zip"]
TOC_PATTERNS = ["**/*index.json", "**/*index.json.gz", "**/*table-of-contents*.json", "**/*table-of-contents*.json.gz"]
# One row per in-network item x negotiated price x NPI of each provider group the price
# refers to (duplicates kept as published). Provider group ids are per document.
RATES_VIEW = """
WITH priced AS (SELECT *, unnest(provider_refs) AS provider_ref FROM prices)
SELECT p.study, p.file, p.run_id, p.document, p.item, p.rate, p.price,
       p.billing_code_type, p.billing_code, p.negotiated_type, p.negotiated_rate,
       p.expiration_date, p.billing_class, p.setting, p.service_code, p.billing_code_modifier,
       p.provider_ref, g.npi, g.tin_type, g.tin_value, g.business_name, g.network_name
FROM priced AS p
JOIN provider_groups AS g
  ON g.run_id = p.run_id AND g.document = p.document AND g.provider_ref = p.provider_ref
"""
VERSION = re.compile(rb'"version"\s*:\s*"([^"]{1,40})"')


Kind = Literal["in-network", "allowed-amounts", "provider-references", "table-of-contents"]


class PriceTransparencyData(DataConfig):
    include: list[str] = Field(default_factory=lambda: list(PATTERNS))


class PriceTransparencySection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: list[Kind] = Field(
        default_factory=lambda: list(get_args(Kind)),
        min_length=1,
        description="The file kinds whose contents become rows; the others' elements are counted as skipped.",
    )
    billing_codes: list[str] = Field(default_factory=list, description="Only these billing codes (empty: all).")
    npis: list[str] = Field(default_factory=list, description="Only provider groups rows of these NPIs.")
    tins: list[str] = Field(default_factory=list, description="Only provider groups of these tax ids (EIN or NPI).")
    strict: bool = Field(default=False, description="A schema violation fails the file instead of a problems row.")
    tables_of_contents: list[str] = Field(
        default_factory=lambda: list(TOC_PATTERNS),
        description="Data files that are tables of contents: the in-network files they list become data files.",
    )
    plans: list[str] = Field(
        default_factory=list, description="Only the files a table of contents lists for these plan ids, EINs or names."
    )


class PriceTransparencyConfig(StudyConfig):
    data: PriceTransparencyData
    price_transparency: PriceTransparencySection = Field(default_factory=PriceTransparencySection)


class PriceTransparency(WorkflowType):
    name = "price-transparency"
    package = "biomarkerflow"  # its code is the platform's own: runs record that version
    checked_sections = ("price_transparency",)

    @property
    def config_model(self) -> type[StudyConfig]:
        return PriceTransparencyConfig

    def check(self, sections: Mapping[str, Any]) -> list[Problem]:
        return []  # the section's schema says all there is to say

    def check_files(self, data: DataConfig, files: Sequence[FileEntry]) -> list[Problem]:
        return []  # a file's JSON is read by its job, which says where it breaks

    def subject_inputs(self, config: StudyConfig, fields: Mapping[str, Any] | None) -> dict[str, Any]:
        return {}

    def results_identity(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {"price_transparency": config.get("price_transparency")}

    def cost_identity(self, config: StudyConfig) -> Any:
        section = cast(PriceTransparencyConfig, config).price_transparency
        return {"filtered": bool(section.billing_codes or section.npis or section.tins)}

    def header_bytes(self, relative_path: str) -> int:
        return HEADER_BYTES

    def header_facts(self, head: bytes, size: int, relative_path: str) -> dict[str, Any]:
        return header_facts(head, size, relative_path)

    def expand_files(self, config: Mapping[str, Any], entries: list[FileEntry]) -> list[FileEntry]:
        """Each table of contents stays a data file (its rows say which plan has which file),
        and the in-network files it lists for the plans asked for are added, each URL once."""
        from biomarkerflow.plugins.price_transparency.toc import listed_in_network_files

        section = PriceTransparencySection.model_validate(config.get("price_transparency") or {})
        known = {entry.url for entry in entries}
        expanded = list(entries)
        for entry in entries:
            if not store.matches(entry.relative_path, section.tables_of_contents):
                continue
            for url in listed_in_network_files(entry.url, frozenset(section.plans)):
                if url not in known:
                    known.add(url)
                    expanded.append(remote_entry(url))
        return expanded

    def views(self) -> dict[str, str]:
        return {"rates": RATES_VIEW}

    def plan_job(self, config: StudyConfig) -> Any:
        section = cast(PriceTransparencyConfig, config).price_transparency
        return section.model_dump()

    def run_job(self, path: Path, plan: Any, inputs: dict[str, Any], *, subject: str | None) -> RunOutput:
        from biomarkerflow.plugins.price_transparency.extract import MrfError, extract
        from biomarkerflow.plugins.price_transparency.flatten import Filters

        filters = Filters(
            frozenset(plan["billing_codes"]), frozenset(plan["npis"]), frozenset(plan["tins"]), frozenset(plan["kinds"])
        )
        scratch = Path(tempfile.mkdtemp(prefix="biomarkerflow-mrf-"))
        try:
            result = extract(path, scratch, filters=filters, strict=plan["strict"])
        except BaseException as exc:
            shutil.rmtree(scratch, ignore_errors=True)  # no partial tables are kept
            if isinstance(exc, MrfError):
                raise StepError(STEP, str(exc)) from None  # it names the document and the byte
            raise
        summaries = result.documents.values()
        versions = sorted({str(s.header.get("version")) for s in summaries if s.header.get("version")})
        problems = sum(s.problems for s in summaries)
        return RunOutput(
            tables=dict(result.tables),
            facts={
                "documents": len(result.documents),
                "schema_version": ", ".join(versions) or None,
                UNCOMPRESSED_BYTES: sum(s.json_bytes for s in summaries),
            },
            steps=[{"step": STEP, "params": dict(plan)}],
            notices=_notices(problems, summaries, plan["kinds"]),
            scratch=scratch,
        )


def _notices(problems: int, summaries: Iterable[FileSummary], kinds: list[str]) -> tuple[str, ...]:
    """What a reader of the results must know: elements not read, and elements left out."""
    notices = [f"{problems} element(s) could not be read: see the problems table"] if problems else []
    skipped: dict[str, int] = {}
    for summary in summaries:
        for section, count in summary.skipped.items():
            skipped[section] = skipped.get(section, 0) + count
    for section, count in sorted(skipped.items()):
        notices.append(f"{count} '{section}' element(s) skipped: the study reads only {', '.join(kinds)} (kinds)")
    return tuple(notices)


def remote_entry(url: str) -> FileEntry:
    """A file a table of contents lists, as a data file: named by its host and path, and
    unchanged for as long as it is listed (publishers give each month's files new URLs)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return store.FileEntry(
        url=url, relative_path=f"listed/{parts.netloc}{parts.path}", size=0, mtime=None, etag=f"listed:{url}"
    )


def header_facts(head: bytes, size: int, relative_path: str) -> dict[str, Any]:
    """Cheap facts for estimates, from a file's first bytes: its container, the size of its
    JSON (exact for plain JSON and a whole small gzip; for a larger gzip, the compressed size
    times the ratio of its first block: the trailer's size is modulo 4 GiB and only of the
    last member), and the schema version when it comes first."""
    suffixes = "".join(PurePosixPath(relative_path).suffixes).lower()
    kind = "zip" if suffixes.endswith(".zip") else "gzip" if head[:2] == b"\x1f\x8b" else "json"
    facts: dict[str, Any] = {"container": kind}
    text = head
    if kind == "gzip":
        text, ratio = _gzip_head(head)
        if ratio is not None and len(head) < size:
            facts[UNCOMPRESSED_BYTES] = round(size * ratio)
        elif ratio is not None:  # the whole file: every member decompressed, exact
            with contextlib.suppress(OSError, EOFError, zlib.error):
                facts[UNCOMPRESSED_BYTES] = len(gzip.decompress(head))
    elif kind == "json":
        facts[UNCOMPRESSED_BYTES] = size
    found = VERSION.search(text)
    if found:
        facts["schema_version"] = found.group(1).decode("ascii", errors="replace")
    return facts


def _gzip_head(head: bytes) -> tuple[bytes, float | None]:
    """The JSON text at the start of a gzip file, and how many bytes of it each compressed
    byte gave (None for a file that is not gzip after all: its job says so)."""
    inflate = zlib.decompressobj(wbits=31)  # a gzip header and stream
    try:
        text = inflate.decompress(head)
    except zlib.error:
        return b"", None
    used = len(head) - len(inflate.unused_data)
    return text, (len(text) / used if used else None)


WORKFLOW_TYPE = PriceTransparency()
