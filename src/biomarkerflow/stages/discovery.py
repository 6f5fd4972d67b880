"""Stage 1, config discovery: configs location -> validated studies -> registered files.

Incremental: a config whose bytes did not change is not validated again (its stored,
already-validated form is used), and files whose fingerprint did not change are left
alone, so a rescan costs one listing per location.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from biomarkerflow.catalog.manager import Catalog, RegisterInfo
from biomarkerflow.config import preflight
from biomarkerflow.config.loader import LoadedConfig, parse_study_config
from biomarkerflow.config.preflight import subject_of
from biomarkerflow.config.schema import StudyConfig, data_model_for
from biomarkerflow.config.validate import validate_source
from biomarkerflow.errors import BiomarkerflowError, ConfigProblem
from biomarkerflow.plugins import registry
from biomarkerflow.stages import quality_gates
from biomarkerflow.stages.quality_gates import Regated
from biomarkerflow.stages.types import workflow_type
from biomarkerflow.storage import store

CONFIG_PATTERNS = ["*.yaml", "*.yml"]
# Said of every file a config change made STALE: "pipeline" in the general sense, what the
# workflow type runs (e.g. an algorithm's parameter or the pinned package changed).
_STALE_REASON = "the study's pipeline, package or metadata mapping changed"


@dataclass(frozen=True)
class StudyScanInfo:
    source: str
    study_id: str | None
    config_change: str  # new | changed | unchanged | invalid | error
    files: RegisterInfo = RegisterInfo()
    matched_files: int = 0
    stale: int = 0  # finished files whose results the config change made out of date
    regated: Regated = Regated()  # files moved in or out by changed quality gates (nothing recomputed)
    problems: list[ConfigProblem] = field(default_factory=list)
    error: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class ScanInfo:
    configs_location: str
    studies: list[StudyScanInfo]

    @property
    def ok(self) -> bool:
        return all(s.config_change not in ("invalid", "error") for s in self.studies)


def stored_config(config: StudyConfig, resolve: Any) -> dict[str, Any]:
    """The config as the catalog keeps it: every location resolved to an absolute path or URL."""
    data = config.model_dump(mode="json")
    data["data"]["location"] = resolve(config.data.location)
    data["output"]["location"] = resolve(config.output.location)
    for source in data["metadata"]:
        source["location"] = resolve(source["location"])
    return data


def results_identity(config: dict[str, Any]) -> str:
    """A hash of what decides a study's numbers: the workflow type, its own part (e.g. which
    algorithm, with which parameters and package) and the metadata column mapping.
    Description, priority, locations do not count."""
    workflow_type = registry.find(config.get("workflow"))
    relevant = {
        **(workflow_type.results_identity(config) if workflow_type is not None else {}),
        "workflow": config.get("workflow"),
        "metadata_columns": [source.get("columns", {}) for source in config.get("metadata", [])],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _gates(config: dict[str, Any]) -> dict[str, float]:
    return dict((config.get("requirements") or {}).get("quality") or {})


def register_study_files(catalog: Catalog, study_id: str, config: dict[str, Any]) -> tuple[RegisterInfo, int]:
    """List the study's data location and register what matches; (changes, files matched)."""
    data = config["data"]
    listed = store.list_files(data["location"], data["include"], data.get("exclude"))
    entries = workflow_type(config).expand_files(config, listed)
    rows = [
        (
            e.url,
            e.relative_path,
            subject_of(PurePosixPath(e.relative_path).name, data["subject"]),
            e.size,
            e.mtime,
            e.fingerprint,
        )
        for e in entries
    ]
    # An empty listing removes nothing: more likely a location not mounted than a study emptied.
    return catalog.register_files(study_id, rows, complete=bool(rows)), len(rows)


Validator = Callable[[str, bytes], tuple[LoadedConfig | None, list[ConfigProblem]]]


def _scan_one(catalog: Catalog, url: str, text: bytes, validate: Validator, declared: dict[str, str]) -> StudyScanInfo:
    sha = hashlib.sha256(text).hexdigest()
    stale = 0
    regated = Regated()
    if catalog.known_config_sha(url) == sha:
        study = next(s for s in catalog.studies() if s.config_source == url)
        change = "unchanged"
        config = study.config
        study_id = study.id
    else:
        loaded, problems = validate(url, text)
        if loaded is None or problems:
            return StudyScanInfo(source=url, study_id=None, config_change="invalid", problems=problems)
        study_id = loaded.config.study
        moved_from = _moved_from(catalog, loaded, declared)
        if moved_from is not None:  # renamed or moved: the study (catalog, results) goes with the file
            catalog.move_study_config(study_id, url)
        duplicate = _duplicate_id(catalog, loaded, declared)
        if duplicate is not None:
            return StudyScanInfo(source=url, study_id=None, config_change="invalid", problems=[duplicate])
        missing = preflight.location_problem(loaded, loaded.config.data)
        if missing is not None:
            # Not a config problem for scan: the location may be a mount that is down, and
            # exit code 3 says "a location cannot be read". The message is the same as validate's.
            return StudyScanInfo(source=url, study_id=study_id, config_change="error", error=str(missing))
        config = stored_config(loaded.config, loaded.resolve)
        previous = catalog.get_study(study_id)
        change = catalog.upsert_study(
            study_id,
            config_source=url,
            config_sha256=sha,
            config=config,
            output_location=config["output"]["location"],
            data_location=config["data"]["location"],
            priority=loaded.config.priority,
        )
        if previous is not None and results_identity(previous.config) != results_identity(config):
            stale = catalog.mark_stale(study_id, _STALE_REASON)
        elif previous is not None and _gates(previous.config) != _gates(config):
            regated = quality_gates.regate(catalog, study_id, _gates(config))
    files, matched = register_study_files(catalog, study_id, config)
    hint = None
    if matched == 0:
        data = data_model_for(config.get("workflow")).model_validate(config["data"])
        hint = preflight.no_match_message(config["data"]["location"], data)
    return StudyScanInfo(
        source=url,
        study_id=study_id,
        config_change=change,
        files=files,
        matched_files=matched,
        stale=stale,
        regated=regated,
        hint=hint,
    )


def _declared_ids(catalog: Catalog, texts: dict[str, bytes]) -> dict[str, str]:
    """Config URL -> the study id it declares, for every config of this scan that declares one.

    Unchanged configs answer from the catalog; others are parsed (YAML and schema only:
    milliseconds), so a new config can be checked against a config scanned after it.
    """
    registered = {s.config_source: s for s in catalog.studies()}
    declared: dict[str, str] = {}
    for url, text in texts.items():
        study = registered.get(url)
        if study is not None and study.config_sha256 == hashlib.sha256(text).hexdigest():
            declared[url] = study.id
            continue
        data = parse_study_config(url, text).data
        study_id = data.get("study") if isinstance(data, dict) else None
        if isinstance(study_id, str):
            declared[url] = study_id
    return declared


def _duplicate_id(catalog: Catalog, loaded: LoadedConfig, declared: dict[str, str]) -> ConfigProblem | None:
    """The problem when another config uses this config's study id, else None.

    The config the catalog has the study from keeps it; a config naming the id of a
    study registered from another config is refused, and so are all the new configs
    sharing an id no config has registered yet (none of them can be the right one).
    """
    url, study_id = loaded.source, loaded.config.study
    others = [other for other, other_id in declared.items() if other_id == study_id and other != url]
    owner = catalog.get_study(study_id)
    if owner is not None and owner.config_source == url:
        return None
    if owner is not None:
        others = [owner.config_source] + [o for o in others if o != owner.config_source]
        return preflight.duplicate_id_problem(loaded, study_id, others, registered=True)
    if others:
        return preflight.duplicate_id_problem(loaded, study_id, others)
    return None


def _moved_from(catalog: Catalog, loaded: LoadedConfig, declared: dict[str, str]) -> str | None:
    """The config file this one replaces (its study's registered config, now gone, and no
    other config of this scan declaring the id), else None."""
    owner = catalog.get_study(loaded.config.study)
    if owner is None or owner.config_source == loaded.source or owner.config_source in declared:
        return None
    if any(other != loaded.source and other_id == owner.id for other, other_id in declared.items()):
        return None
    return owner.config_source if _gone(owner.config_source) else None


def _gone(config_source: str) -> bool:
    try:
        return not store.exists(config_source)
    except BiomarkerflowError:
        return False  # cannot tell (a store that is down): the study stays where it is


def scan(catalog: Catalog, configs_location: str, validate: Validator = validate_source) -> ScanInfo:
    """Find configs under `configs_location`, register their studies and data files.

    One bad config never stops the others: its problems are returned, and a study
    already in the catalog keeps its last valid config. `validate` may run elsewhere
    (a warm worker that has the package imported already). Two configs declaring one study id
    are invalid (except the one the catalog has the study from).
    """
    if store.is_local(configs_location):
        configs_location = str(Path(configs_location.removeprefix("file://")).resolve())
    if configs_location.endswith((".yaml", ".yml")):  # one config file (local or URL)
        urls = [configs_location]
    else:
        urls = [e.url for e in store.list_files(configs_location, CONFIG_PATTERNS)]
    infos: dict[str, StudyScanInfo] = {}
    texts: dict[str, bytes] = {}
    for url in urls:
        try:
            texts[url] = store.read_bytes(url)
        except BiomarkerflowError as exc:
            infos[url] = _failed(url, exc)
    declared = _declared_ids(catalog, texts)
    for url, text in texts.items():
        try:
            infos[url] = _scan_one(catalog, url, text, validate, declared)
        except BiomarkerflowError as exc:
            infos[url] = _failed(url, exc)
    return ScanInfo(configs_location=configs_location, studies=[infos[url] for url in urls])


def _failed(url: str, exc: BiomarkerflowError) -> StudyScanInfo:
    return StudyScanInfo(source=url, study_id=None, config_change="error", error=exc.message, hint=exc.hint)
