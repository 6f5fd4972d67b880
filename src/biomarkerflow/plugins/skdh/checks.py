"""Checks of a study config against the SKDH of the study's runtime (its pinned version).

The schema only knows shapes; these checks know SKDH: which package and version,
which reader, which steps and parameters exist, and the step orders that make SKDH
stop or quietly give incomplete results (DESIGN.md, "Known SKDH behaviours").
Each problem is a (field path, message) pair; the caller locates it in the YAML.

`check_pin` and `check_files` need no SKDH and run in the validating process;
`check_pipeline` and `check_data` import SKDH and run in the study's runtime.
"""

from __future__ import annotations

import importlib.metadata
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from biomarkerflow.errors import StorageError
from biomarkerflow.plugins.skdh import formats, steps
from biomarkerflow.plugins.skdh.config import PipelineConfig, SkdhDataConfig, StepSpec
from biomarkerflow.storage import store
from biomarkerflow.storage.store import FileEntry

__all__ = ["PACKAGE", "check_data", "check_files", "check_pin", "check_pipeline", "installed_version"]

PACKAGE = "scikit-digital-health"

Problem = tuple[str, str]


def installed_version() -> str | None:
    """The installed scikit-digital-health version, None if it is not installed."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_pipeline(pipeline: PipelineConfig) -> list[Problem]:
    """SKDH problems of a schema-valid `pipeline` section: package, steps, step order.

    Usable when the rest of the study config fails the schema; field paths start
    with `pipeline.` as in the whole config.
    """
    problems = check_pin(pipeline) or _check_installed(pipeline.package)
    step_problems, valid = _check_steps(pipeline.steps)
    problems += step_problems
    problems += _check_order(pipeline.steps, valid)
    return problems


def check_data(data: SkdhDataConfig) -> list[Problem]:
    """SKDH problems of a schema-valid `data` section: the reader and its parameters.

    Usable when the rest of the study config fails the schema; field paths start
    with `data.` as in the whole config.
    """
    return _check_reader(data)


def check_pin(pipeline: PipelineConfig) -> list[Problem]:
    """Problems of the pin itself (package name, one exact version, constraints).

    Needs no SKDH, so it runs before a runtime for the pin is looked for.
    """
    field = "pipeline.package"
    example = f"{PACKAGE}=={installed_version() or '0.17.18'}"
    try:
        requirement = Requirement(pipeline.package)
    except InvalidRequirement:
        return [(field, f"'{pipeline.package}' is not a package requirement; write e.g. {example}")]
    if canonicalize_name(requirement.name) != PACKAGE:
        message = f"the skdh workflow runs {PACKAGE}, not '{requirement.name}'; write e.g. {example}"
        return [(field, message)]
    if pinned_version(pipeline.package) is None:
        return [(field, f"'{pipeline.package}' does not pin one version; pin an exact version, e.g. {example}")]
    return _check_constraints(pipeline.constraints)


def _check_constraints(constraints: Sequence[str]) -> list[Problem]:
    problems: list[Problem] = []
    for i, text in enumerate(constraints):
        field = f"pipeline.constraints[{i}]"
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            problems.append((field, f"'{text}' is not a package requirement; write e.g. numpy<2"))
            continue
        if canonicalize_name(requirement.name) == PACKAGE:
            problems.append((field, f"pin {PACKAGE} in pipeline.package, not among the constraints"))
    return problems


def pinned_version(package: str) -> Version | None:
    """The one exact version a requirement pins, None if it allows several."""
    try:
        specifiers = list(Requirement(package).specifier)
    except InvalidRequirement:
        return None
    if len(specifiers) != 1 or specifiers[0].operator not in ("==", "===") or "*" in specifiers[0].version:
        return None
    try:
        return Version(specifiers[0].version)
    except InvalidVersion:
        return None


def _check_installed(package: str) -> list[Problem]:
    """Inside the study's runtime the pinned version is the installed one; say so if not."""
    field = "pipeline.package"
    installed = installed_version()
    pinned = pinned_version(package)
    if installed is None:
        return [(field, f"{PACKAGE} is not installed in this runtime, so {pinned} cannot run")]
    if pinned != Version(installed):
        return [(field, f"{PACKAGE} {pinned} is pinned but this runtime holds {installed}")]
    return []


def _check_reader(data: SkdhDataConfig) -> list[Problem]:
    name = data.reader_name
    base = "data.reader" if isinstance(data.reader, str) else f"data.reader.{name}"
    readers = steps.reader_names()
    if name == "auto":
        problems: list[Problem] = []
        if data.reader_params:
            problems.append((base, "reader 'auto' takes no parameters; name a reader to set parameters"))
        problems += _check_auto_patterns(data.include, readers)
        return problems
    if name not in readers:
        if steps.find_step(name) is not None:
            message = f"'{name}' is a processing step, not a reader; use auto or one of: {', '.join(readers)}"
        else:
            message = f"unknown reader '{name}'; use auto or one of: {', '.join(readers)}"
        return [(base, message)]
    return [(f"{base}.{p.param}" if p.param else base, p.message) for p in steps.check_params(name, data.reader_params)]


def _check_auto_patterns(include: Sequence[str], readers: Sequence[str]) -> list[Problem]:
    problems: list[Problem] = []
    for i, pattern in enumerate(include):
        default = steps.reader_for_file(pattern)
        if default is not None:
            # e.g. ReadCSV cannot run without column names: auto would fail every file.
            for problem in steps.check_params(default, {}):
                message = (
                    f"reader 'auto' picks {default} for '{pattern}', which cannot run without settings "
                    f"({problem.message}); set data.reader: {{{default}: {{...}}}}"
                )
                problems.append((f"data.include[{i}]", message))
            continue
        unreadable = formats.format_without_reader(PurePosixPath(pattern).suffix)
        if unreadable is not None:
            # Naming a reader would not help: no SKDH reader opens these files.
            message = f"'{pattern}' selects {unreadable.name} files, which no reader can open: {unreadable.hint}"
            problems.append((f"data.include[{i}]", message))
            continue
        known = ", ".join(
            f"{ext} ({reader})" for ext, reader in steps.READERS_BY_EXTENSION.items() if reader in readers
        )
        message = (
            f"reader 'auto' has no reader for the files of '{pattern}' (it knows {known}); "
            "set data.reader to the reader for these files"
        )
        problems.append((f"data.include[{i}]", message))
    return problems


# --- the files themselves ------------------------------------------------------------------

SAMPLED_PER_EXTENSION = 3  # files whose first bytes are read, per file extension
SAMPLED_AT_MOST = 24  # and in all: one small (ranged, on S3) read each
_READ_THREADS = 8


def check_files(data: SkdhDataConfig, files: Sequence[FileEntry]) -> list[Problem]:
    """Files the study's reader cannot open, by their first bytes; needs no SKDH.

    SKDH's readers trust the file they get (`ReadBin` on an Axivity file crashes the
    worker), so a sample of the matched files (the first few of each extension) is
    checked against the reader each would get. One problem per reader and format found,
    naming the first such file and how many of the sample are alike.
    """
    sample = _sample(files)
    reader_of = {entry.url: _reader_for(data, entry.relative_path) for entry in sample}
    sample = [entry for entry in sample if reader_of[entry.url] is not None]
    if not sample:
        return []
    with ThreadPoolExecutor(max_workers=min(_READ_THREADS, len(sample))) as pool:
        heads = list(pool.map(_head, sample))
    mismatches: dict[tuple[str, str], list[tuple[FileEntry, bytes]]] = {}
    for entry, head in zip(sample, heads, strict=True):
        reader = reader_of[entry.url]
        found = formats.detect_format(head) if head is not None else None
        if reader is None or head is None or found is None or formats.reader_mismatch(reader, head) is None:
            continue  # no reader to check, unreadable now, or a start the reader may take
        mismatches.setdefault((reader, found.name), []).append((entry, head))
    return [_mismatch_problem(data, reader, alike, len(sample)) for (reader, _), alike in mismatches.items()]


def _sample(files: Sequence[FileEntry]) -> list[FileEntry]:
    taken: dict[str, int] = {}
    sample: list[FileEntry] = []
    for entry in files:
        suffix = PurePosixPath(entry.relative_path).suffix.lower()
        if taken.get(suffix, 0) < SAMPLED_PER_EXTENSION and len(sample) < SAMPLED_AT_MOST:
            taken[suffix] = taken.get(suffix, 0) + 1
            sample.append(entry)
    return sample


def _reader_for(data: SkdhDataConfig, relative_path: str) -> str | None:
    if data.reader_name == "auto":
        return steps.reader_for_file(relative_path)
    return data.reader_name


def _head(entry: FileEntry) -> bytes | None:
    try:
        return store.read_head(entry.url, formats.MAGIC_BYTES)
    except StorageError:
        return None  # unreadable now: the job reports it, with its own retries


def _mismatch_problem(data: SkdhDataConfig, reader: str, alike: list[tuple[FileEntry, bytes]], checked: int) -> Problem:
    entry, head = alike[0]
    shown = posixpath.join(data.location, entry.relative_path)
    message = formats.reader_mismatch(reader, head, shown) or ""
    if data.reader_name == "auto":
        suffix = PurePosixPath(entry.relative_path).suffix
        message = (
            f"reader 'auto' picks {reader} for {suffix} files, and {message} "
            "(or give the file the extension of its format)"
        )
    if len(alike) > 1:
        message += f" ({len(alike)} of the {checked} files checked are alike)"
    field = "data.reader" if isinstance(data.reader, str) else f"data.reader.{data.reader_name}"
    return field, message


def _step(spec: StepSpec) -> tuple[str, dict[str, Any]]:
    name, params = next(iter(spec.items()))
    return name, dict(params or {})


def _check_steps(pipeline: Sequence[StepSpec]) -> tuple[list[Problem], set[int]]:
    """Problems of each step on its own, and the indices of the steps that are fine."""
    problems: list[Problem] = []
    valid: set[int] = set()
    readers = set(steps.reader_names())
    for i, spec in enumerate(pipeline):
        name, params = _step(spec)
        base = f"pipeline.steps[{i}].{name}"
        if name in readers:
            message = f"{name} is a reader: set it under data.reader (e.g. reader: {name}), not as a pipeline step"
            problems.append((base, message))
            continue
        if steps.find_step(name) is None:
            problems.append((base, steps.unknown_step_message(name)))
            continue
        found = steps.check_params(name, params)
        problems += [(f"{base}.{p.param}" if p.param else base, p.message) for p in found]
        if not found:
            valid.add(i)
    return problems, valid


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _day_windows(params: dict[str, Any]) -> set[tuple[int, int]]:
    """The (base, period) windows a GetDayWindowIndices step makes."""
    resolved = steps.resolve_params("GetDayWindowIndices", params)
    bases, periods = resolved.get("bases"), resolved.get("periods")
    if bases is None or periods is None:
        return set()
    try:
        return {(int(b), int(p)) for b, p in zip(_as_list(bases), _as_list(periods), strict=False)}
    except (TypeError, ValueError):
        return set()


def _day_window(step_name: str, params: dict[str, Any]) -> tuple[int, int] | None:
    window: Any = steps.resolve_params(step_name, params).get("day_window")
    try:
        base, period = window
        return int(base), int(period)
    except (TypeError, ValueError):
        return None


def _check_order(pipeline: Sequence[StepSpec], valid: set[int]) -> list[Problem]:
    """Step orders that make SKDH 0.17 stop or silently lose results.

    - Sleep raises "Day indices for (12, 24) not found" unless an earlier
      GetDayWindowIndices makes its day_window (base 12, period 24 by default).
    - ActivityLevelClassification without its day window (0, 24) is not split into
      days; before Sleep it has no sleep information and only logs that.
    """
    problems: list[Problem] = []
    windows: set[tuple[int, int]] = set()
    window_step: int | None = None
    activity_step: int | None = None
    windows_known = True  # False after a GetDayWindowIndices that is itself wrong
    for i, spec in enumerate(pipeline):
        name, params = _step(spec)
        if i not in valid:
            windows_known = windows_known and name != "GetDayWindowIndices"
            continue
        base = f"pipeline.steps[{i}].{name}"
        if name == "GetDayWindowIndices":
            windows |= _day_windows(params)
            window_step = i
        elif name in ("Sleep", "ActivityLevelClassification"):
            day = _day_window(name, params)
            written = steps.resolve_params(name, params).get("day_window")
            if day is None and (written is not None or name == "Sleep"):
                example = "[12, 24]" if name == "Sleep" else "[0, 24]"
                got = "nothing" if written is None else repr(written)
                message = f"{name} needs day_window [base hour, period in hours], e.g. {example}, got {got}"
                if name == "Sleep":
                    message += "; without it SKDH stops with 'Day indices ... not found'"
                problems.append((f"{base}.day_window", message))
            elif windows_known and day is not None and day not in windows:
                problems.append((base, _missing_window(name, day, window_step)))
            if name == "ActivityLevelClassification" and activity_step is None:
                activity_step = i
            if name == "Sleep" and activity_step is not None:
                message = (
                    f"Sleep must come before ActivityLevelClassification "
                    f"(pipeline.steps[{activity_step}]); otherwise the activity results have no "
                    "sleep information"
                )
                problems.append((base, message))
    return problems


def _missing_window(name: str, day: tuple[int, int], window_step: int | None) -> str:
    base, period = day
    if name == "Sleep":
        effect = f"SKDH stops with 'Day indices for ({base}, {period}) (base, period) not found'"
    else:
        effect = "activity is not split into days (set day_window: null if that is intended)"
    example = "- GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}"
    if window_step is None:
        return (
            f"{name} needs GetDayWindowIndices before it, with bases including {base} and "
            f"periods {period}, e.g. `{example}`; otherwise {effect}"
        )
    return (
        f"{name} uses day_window [{base}, {period}] but GetDayWindowIndices "
        f"(pipeline.steps[{window_step}]) makes no {period}-hour window starting at {base}:00; "
        f"add {base} to its bases and {period} to its periods, otherwise {effect}"
    )
