"""Cheap checks of a study config against what its locations hold, before anything runs.

The schema knows shapes and the workflow type's checks know the algorithm package;
what neither can tell is whether the config fits the study's own files: a data
location that does not exist or holds no matching file, a subject pattern that finds
no subject in the file names (those files would wait forever), metadata columns the
metadata file does not have, two configs with one study id. These checks read
listings, CSV header lines and (through the workflow type) a few bytes per file; they
never import the algorithm package, so they run in the validating process.

`expect_data` decides what a location that is not there (yet) means: a problem for
`biomarkerflow validate`, which asks "will this run?"; nothing for `scan`, where data
and metadata may still arrive (scan reports a missing data location itself).
Messages name the resolved location and say what to do, for a scientist who never
read the code.
"""

from __future__ import annotations

import csv
import difflib
import os
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Protocol

from biomarkerflow.config.loader import is_url
from biomarkerflow.config.schema import DataConfig, MetadataSource, RequirementsConfig
from biomarkerflow.errors import ConfigProblem, StorageError
from biomarkerflow.storage import store
from biomarkerflow.storage.store import FileEntry

__all__ = [
    "FileChecker",
    "check_data",
    "check_metadata",
    "csv_columns",
    "duplicate_id_problem",
    "location_problem",
    "metadata_columns",
    "no_match_message",
    "subject_of",
]

Problem = tuple[str, str]

# The workflow type's checks of the matched files (e.g. each file's format, from its first bytes).
FileChecker = Callable[[DataConfig, Sequence[FileEntry]], list[Problem]]

HEADER_BYTES = 64 * 1024  # a CSV header line is far shorter; only this much is read
_SHOWN_COLUMNS = 12
_SHOWN_NAMES = 3


class Located(Protocol):
    """A config that can place a problem on a field and resolve its locations (ParsedConfig, LoadedConfig)."""

    @property
    def source(self) -> str: ...

    def problem(self, field: str, message: str) -> ConfigProblem: ...

    def resolve(self, location: str) -> str: ...


def subject_of(file_name: str, pattern: str) -> str | None:
    """The subject id the `data.subject` pattern finds in a file name, None if it finds none."""
    match = re.search(pattern, file_name)
    return match.group("subject") if match and match.group("subject") else None


# --- data --------------------------------------------------------------------------------


def check_data(
    config: Located, data: DataConfig, *, expect_data: bool, file_checks: FileChecker | None = None
) -> list[ConfigProblem]:
    """Problems of the data location and its files: exists, has matching files, subject ids, formats."""
    missing = location_problem(config, data)
    if missing is not None:
        return [missing] if expect_data else []
    location = config.resolve(data.location)
    try:
        files = store.list_files(location, data.include, data.exclude)
    except StorageError as exc:  # e.g. a file where a folder belongs
        if not expect_data:
            return []
        return [config.problem("data.location", f"{exc.message}; {exc.hint or 'fix data.location'}")]
    if not files:
        return [config.problem("data.include", no_match_message(location, data))] if expect_data else []
    problems = _check_subjects(config, data, files)
    if file_checks is not None:
        problems += [config.problem(field, message) for field, message in file_checks(data, files)]
    return problems


def location_problem(config: Located, data: DataConfig) -> ConfigProblem | None:
    """The problem at `data.location` when it does not exist or cannot be read, else None."""
    location = config.resolve(data.location)
    try:
        exists = store.exists(location)
    except StorageError as exc:
        return config.problem("data.location", f"cannot read {location}: {exc.message}")
    if exists:
        return None
    what = "folder" if not is_url(location) else "location"
    message = f"{what} {location} does not exist{_relative_note(config, data.location)}"
    broken = _first_missing_part(location)
    if broken is not None:
        message += f" ({broken[0]} exists, but has no '{broken[1]}')"
    if is_url(location):
        message += " (or these credentials cannot see it)"
    return config.problem(
        "data.location",
        f"{message}; create it and put the recordings there, or correct the path, e.g. location: data/raw",
    )


def no_match_message(location: str, data: DataConfig) -> str:
    """Why no file of `location` is taken, and what is there instead (the location exists)."""
    everything = store.list_files(location, ["*"])
    if not everything:
        return (
            f"{location} holds no files yet; put the recordings there "
            f"(files matching include {_patterns(data.include)})"
        )
    included = store.list_files(location, data.include)
    if included:
        return (
            f"all {len(included)} files in {location} matching include {_patterns(data.include)} are "
            f"left out by exclude {_patterns(data.exclude)}; narrow exclude, e.g. exclude: []"
        )
    counts = Counter(PurePosixPath(e.relative_path).suffix.lower() or "(no extension)" for e in everything)
    found = ", ".join(f"{suffix} ({count})" for suffix, count in counts.most_common(5))
    message = (
        f"none of the {len(everything)} files in {location} matches include {_patterns(data.include)} "
        f"(found extensions: {found})"
    )
    suffix = next((s for s, _ in counts.most_common() if s.startswith(".")), None)
    if suffix is not None:
        message += f"; add a pattern for the recordings, e.g. include: ['**/*{suffix}']"
    return message


def _check_subjects(config: Located, data: DataConfig, files: Sequence[FileEntry]) -> list[ConfigProblem]:
    """The subject pattern must find a subject id in every file name, or those files wait forever."""
    names = [PurePosixPath(e.relative_path).name for e in files]
    without = [name for name in names if subject_of(name, data.subject) is None]
    if not without:
        return []
    shown = ", ".join(f"'{name}'" for name in without[:_SHOWN_NAMES])
    if len(without) == len(names):
        message = (
            f"'{data.subject}' matches none of the {len(names)} file names, e.g. {shown}: their files would "
            "wait forever for a subject id; the named group (?P<subject>...) must match part of the name"
        )
        suggestion = _suggest_pattern(names)
        if suggestion is not None:
            pattern, subject = suggestion
            message += f", e.g. subject: '{pattern}' finds '{subject}' in '{without[0]}'"
        return [config.problem("data.subject", message)]
    message = (
        f"'{data.subject}' finds no subject id in {len(without)} of the {len(names)} file names, e.g. {shown}: "
        "those files would wait forever; change the pattern so it matches them too, or leave them out, "
        f"e.g. exclude: ['{without[0]}']"
    )
    return [config.problem("data.subject", message)]


def _suggest_pattern(names: Sequence[str]) -> tuple[str, str] | None:
    """A pattern taking the name up to its first separator, if that finds a subject in every name."""
    example = names[0]
    for separator in ("_", "-", " ", "."):
        if example.find(separator) > 0:
            escaped = re.escape(separator)
            pattern = f"(?P<subject>[^{escaped}]+){escaped}"
            subject = subject_of(example, pattern)
            if subject is not None and all(subject_of(name, pattern) for name in names):
                return pattern, subject
    return None


# --- metadata ----------------------------------------------------------------------------


def check_metadata(
    config: Located,
    sources: Sequence[MetadataSource | None],
    requirements: RequirementsConfig | None,
    *,
    expect_data: bool,
) -> list[ConfigProblem]:
    """Metadata files exist and have the columns the config names; only header lines are read.

    `sources` holds None for a source that failed the schema (it has its own problem);
    required columns are then not judged, since they may be in that file.
    """
    problems: list[ConfigProblem] = []
    headers: dict[int, list[str]] = {}
    for i, source in enumerate(sources):
        if source is None:
            continue
        columns, problem = _header(config, i, source, expect_data)
        if problem is not None:
            problems.append(problem)
        if columns is not None:
            headers[i] = columns
            problems += _check_source_columns(config, i, source, columns)
    if requirements is None or not requirements.metadata:
        return problems
    if not sources:
        if expect_data:
            problems += _no_metadata_file(config, requirements)
        return problems
    if len(headers) == len(sources):  # every file's columns are known
        problems += _check_required(config, [s for s in sources if s is not None], headers, requirements)
    return problems


def csv_columns(location: str) -> list[str]:
    """The column names of a CSV file, from its first line only (one small read, ranged on S3)."""
    head = store.read_head(location, HEADER_BYTES).decode("utf-8-sig", errors="replace")
    lines = head.splitlines()
    if not lines:
        return []
    return next(csv.reader([lines[0]]), [])


def metadata_columns(locations: Sequence[str]) -> dict[str, list[str]] | None:
    """Resolved metadata file -> its columns (header line only); None when a file is missing or unreadable."""
    found: dict[str, list[str]] = {}
    for location in locations:
        try:
            if not store.exists(location):
                return None
            found[location] = csv_columns(location)
        except StorageError:
            return None
    return found


def _header(
    config: Located, index: int, source: MetadataSource, expect_data: bool
) -> tuple[list[str] | None, ConfigProblem | None]:
    """(the file's columns or None, the problem reading it or None)."""
    field = f"metadata[{index}].location"
    location = config.resolve(source.location)
    try:
        if not store.exists(location):
            if not expect_data:
                return None, None  # it may still arrive: processing waits for it
            message = (
                f"metadata file {location} does not exist{_relative_note(config, source.location)}; "
                "create it (a CSV file with one row per subject, first line e.g. subject,height_m) "
                "or correct the path"
            )
            return None, config.problem(field, message)
        columns = csv_columns(location)
    except StorageError as exc:
        return None, config.problem(field, f"cannot read metadata file {location}: {exc.message}")
    if not [c for c in columns if c.strip()]:
        message = (
            f"metadata file {location} is empty; its first line must name the columns, "
            f"e.g. {source.subject_column},height_m"
        )
        return None, config.problem(field, message)
    return columns, None


def _check_source_columns(
    config: Located, index: int, source: MetadataSource, columns: list[str]
) -> list[ConfigProblem]:
    shown = source.location
    problems: list[ConfigProblem] = []
    if source.subject_column not in columns:
        guess = _closest(source.subject_column, columns) or columns[0]
        message = (
            f"column '{source.subject_column}' is not in {shown} ({_columns(columns)}); set subject_column "
            f"to the column that holds the subject ids, e.g. subject_column: {guess}"
        )
        problems.append(config.problem(f"metadata[{index}].subject_column", message))
    for column, keyword in source.columns.items():
        if column not in columns:
            guess = _closest(column, columns) or columns[-1]
            message = (
                f"column '{column}' is not in {shown} ({_columns(columns)}); map a column it has, "
                f"e.g. columns: {{{guess}: {keyword}}}"
            )
            problems.append(config.problem(f"metadata[{index}].columns.{column}", message))
    return problems


def _check_required(
    config: Located,
    sources: Sequence[MetadataSource],
    headers: dict[int, list[str]],
    requirements: RequirementsConfig,
) -> list[ConfigProblem]:
    every = [c for i in sorted(headers) for c in headers[i] if c != sources[i].subject_column]
    files = " or ".join(s.location for s in sources)
    listing = _columns(list(dict.fromkeys(every))) if len(sources) > 1 else _columns(headers[0])
    problems: list[ConfigProblem] = []
    for j, column in enumerate(requirements.metadata):
        if column in every:
            continue
        guess = _closest(column, every)
        fix = f"add the column to {files}"
        if guess is not None:
            fix += f", or require a column that is there, e.g. metadata: [{guess}]"
        message = f"column '{column}' is not in {files} ({listing}); {fix}"
        problems.append(config.problem(f"requirements.metadata[{j}]", message))
    return problems


def _no_metadata_file(config: Located, requirements: RequirementsConfig) -> list[ConfigProblem]:
    message = (
        "the study has no metadata file, so no subject can ever have column '{column}' and every file would "
        "wait forever; add one, e.g. metadata: [{{location: data/subjects.csv}}], or remove this requirement"
    )
    return [
        config.problem(f"requirements.metadata[{j}]", message.format(column=column))
        for j, column in enumerate(requirements.metadata)
    ]


# --- study ids ---------------------------------------------------------------------------


def duplicate_id_problem(
    config: Located, study_id: str, others: Sequence[str], *, registered: bool = False
) -> ConfigProblem:
    """The problem at `study` when another config uses the same study id."""
    named = ", ".join(others)
    how = "is already registered in the catalog by" if registered else "is also used by"
    message = (
        f"study id '{study_id}' {how} {named}; each study needs its own id: change study: in one of them, "
        f"e.g. study: {study_id}-2"
    )
    return config.problem("study", message)


# --- wording -----------------------------------------------------------------------------


def _relative_note(config: Located, written: str) -> str:
    """Where a relative location is read from, since that is the usual surprise."""
    if is_url(written) or os.path.isabs(os.path.expanduser(written)):
        return ""
    folder = posixpath.dirname(config.source) if is_url(config.source) else os.path.dirname(config.source)
    return f" ('{written}' is read relative to the config file's folder {folder})"


def _first_missing_part(location: str) -> tuple[str, str] | None:
    """(deepest existing folder, the next part that is missing) of a local path."""
    if is_url(location) and not location.startswith("file://"):
        return None
    path = os.path.abspath(location.removeprefix("file://"))
    parent, part = os.path.split(path)
    while parent != path and not os.path.isdir(parent):
        path = parent
        parent, part = os.path.split(path)
    return (parent, part) if os.path.isdir(parent) else None


def _columns(columns: Sequence[str]) -> str:
    shown = ", ".join(columns[:_SHOWN_COLUMNS])
    more = f", ... ({len(columns)} in all)" if len(columns) > _SHOWN_COLUMNS else ""
    return f"its columns: {shown}{more}"


def _closest(name: str, columns: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(columns), n=1, cutoff=0.5)
    return close[0] if close else None


def _patterns(patterns: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{p}'" for p in patterns) + "]"
