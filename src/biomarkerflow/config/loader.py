"""Load a study config from YAML, keeping the line and column of every field.

Every problem is reported with its file, 1-based line and column, and dotted field path
(`requirements.metadata[2]`), and all of them at once. The steps live beside this
module: `sources` (reading, URLs, relative locations), `yaml_positions` (safe YAML
parsing that keeps where each node is written) and `problems` (pydantic errors turned
into located, plainly worded problems). The names other code uses are importable here.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from biomarkerflow.config.problems import kind_of, locate, parent_path, problem_at, sorted_problems, translate_errors
from biomarkerflow.config.schema import StudyConfig, model_for
from biomarkerflow.config.sources import decode_text, is_url, normalise_source, read_bytes, resolve_location
from biomarkerflow.config.yaml_positions import Position, node_positions, parse_yaml, position
from biomarkerflow.errors import ConfigError, ConfigProblem

__all__ = [
    "LoadedConfig",
    "ParsedConfig",
    "is_url",
    "load_study_config",
    "load_yaml_model",
    "parent_path",
    "parse_study_config",
    "resolve_location",
    "sorted_problems",
]

ModelT = typing.TypeVar("ModelT", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated study config and where each of its fields is written.

    `locations` maps a field path to the (line, column) where the field is written:
    the key of a mapping entry (`data.subject` -> the `subject:` key), the item of a
    list (`data.include[1]`), and `""` for the document itself. `value_locations`
    maps the same paths to where their values start.
    """

    config: StudyConfig
    source: str
    sha256: str
    text: str
    locations: dict[str, Position]
    value_locations: dict[str, Position] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        """The folder (local path or URL) holding the config file."""
        if is_url(self.source):
            scheme, rest = self.source.split("://", 1)
            return f"{scheme}://{posixpath.dirname(rest)}"
        return os.path.dirname(self.source)

    def resolve(self, location: str) -> str:
        """An absolute local path or URL for a location written in this config (see `resolve_location`)."""
        return resolve_location(self.source, location)

    def locate(self, path: str) -> Position | None:
        """Where a field path is written, else where its nearest written parent is."""
        return locate(self.locations, path)

    def problem(self, field: str, message: str) -> ConfigProblem:
        """A problem about a field path, located at the field or its nearest parent."""
        return problem_at(self.source, self.locations, field, message)


@dataclass(frozen=True)
class ParsedConfig:
    """A config file read, parsed and checked against the schema as far as it goes.

    Unlike `load_study_config` this never raises: every problem found (unreadable
    file, YAML, duplicate keys, schema) is in `problems`, sorted by line. `data` is
    the constructed YAML (None when the file could not be read or parsed) and
    `locations` / `value_locations` are as in `LoadedConfig`, so checks of the parts
    of `data` that are well-formed can still be located when the schema fails.
    `config` is None unless the whole file passed the schema.
    """

    source: str
    sha256: str | None
    text: str | None
    data: Any
    problems: list[ConfigProblem]
    config: StudyConfig | None = None
    locations: dict[str, Position] = field(default_factory=dict)
    value_locations: dict[str, Position] = field(default_factory=dict)

    def locate(self, path: str) -> Position | None:
        """Where a field path is written, else where its nearest written parent is."""
        return locate(self.locations, path)

    def problem(self, field: str, message: str) -> ConfigProblem:
        """A problem about a field path, located at the field or its nearest parent."""
        return problem_at(self.source, self.locations, field, message)

    def resolve(self, location: str) -> str:
        """An absolute local path or URL for a location written in this config (see `resolve_location`)."""
        return resolve_location(self.source, location)

    def loaded(self) -> LoadedConfig | None:
        """The `LoadedConfig`, or None when the file has any problem."""
        if self.problems or self.config is None or self.sha256 is None or self.text is None:
            return None
        return LoadedConfig(
            config=self.config,
            source=self.source,
            sha256=self.sha256,
            text=self.text,
            locations=self.locations,
            value_locations=self.value_locations,
        )


def load_study_config(source: str | Path, text: str | bytes | None = None) -> LoadedConfig:
    """Read, parse and validate one study config.

    `source` is a local path or a URL. When `text` is given it is used as the file's
    content and `source` only names the file and anchors its relative locations (so
    discovery can read bytes through fsspec once). Raises `ConfigError` carrying every
    problem found, each with file, line, column and field path.
    """
    parsed = parse_study_config(source, text)
    loaded = parsed.loaded()
    if loaded is None:
        raise ConfigError(parsed.problems)
    return loaded


def parse_study_config(source: str | Path, text: str | bytes | None = None) -> ParsedConfig:
    """Read, parse and validate one study config without raising (see `ParsedConfig`).

    `source` and `text` are as for `load_study_config`.
    """
    name = normalise_source(source)
    try:
        raw = read_bytes(name) if text is None else text
        data_bytes = raw.encode("utf-8") if isinstance(raw, str) else raw
        decoded = raw if isinstance(raw, str) else decode_text(name, raw)
    except ConfigError as exc:
        return ParsedConfig(name, None, None, None, sorted_problems(exc.problems))
    sha256 = hashlib.sha256(data_bytes).hexdigest()
    if decoded.startswith("\ufeff"):
        decoded = decoded[1:]

    root, data, problems = parse_yaml(name, decoded)
    if root is None:
        return ParsedConfig(name, sha256, decoded, None, sorted_problems(problems))
    keys, values = node_positions(root)
    locations = {path: keys.get(path, values[path]) for path in values}

    config: StudyConfig | None = None
    if not isinstance(data, dict):
        kind = kind_of(data)
        problems.append(
            ConfigProblem(
                name,
                *position(root),
                "",
                f"the top level must be a mapping of fields (study:, data:, output: ...), not {kind}",
            )
        )
    else:
        try:
            config = StudyConfig.model_validate(data)  # by the model of the workflow type it names
        except pydantic.ValidationError as exc:
            problems.extend(translate_errors(name, root, exc.errors(), model_for(data.get("workflow"))))

    return ParsedConfig(
        source=name,
        sha256=sha256,
        text=decoded,
        data=data,
        problems=sorted_problems(problems),
        config=config,
        locations=locations,
        value_locations=values,
    )


def load_yaml_model(source: str | Path, model: type[ModelT]) -> ModelT:
    """Any YAML file of ours (settings, not only study configs) checked against `model`.

    Problems are found and located as for study configs (file, line, column, field,
    every problem at once) and raised together as one `ConfigError`.
    """
    name = normalise_source(source)
    decoded = decode_text(name, read_bytes(name)).removeprefix("\ufeff")
    if not decoded.strip():
        return model.model_validate({})  # an empty file: every default
    root, data, problems = parse_yaml(name, decoded)
    if root is not None and not problems:
        try:
            return model.model_validate(data if data is not None else {})
        except pydantic.ValidationError as exc:
            problems.extend(translate_errors(name, root, exc.errors(), model))
    raise ConfigError(sorted_problems(problems))
