"""Load a study config from YAML, keeping the line and column of every field.

PyYAML's `safe_load` forgets where values came from and silently keeps the last of
two equal keys. Here the document is first *composed* with `yaml.SafeLoader` (which
keeps node marks), checked for duplicate keys, then constructed with the same safe
constructor, so no arbitrary Python object can ever be built from a config. Every
problem is reported with its file, 1-based line and column, and dotted field path
(`requirements.metadata[2]`), and all of them at once.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import posixpath
import re
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pydantic
import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from biomarkerflow.config.schema import StudyConfig, model_for
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

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_LAST_PART = re.compile(r"(\.[^.\[\]]*|\[\d+\])$")

Position = tuple[int, int]
ModelT = typing.TypeVar("ModelT", bound=pydantic.BaseModel)


def is_url(location: str | Path) -> bool:
    """True for `s3://...`, `https://...` and other URLs; False for local paths."""
    return isinstance(location, str) and bool(_URL.match(location))


def parent_path(path: str) -> str | None:
    """`a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> `` -> None."""
    if not path:
        return None
    match = _LAST_PART.search(path)
    return path[: match.start()] if match else ""


def resolve_location(source: str, location: str) -> str:
    """An absolute local path or URL for a location written in the config at `source`.

    Relative locations are relative to the config file's folder, also when the
    config itself lives at a URL: for `s3://b/configs/x.yaml`, `data/raw` becomes
    `s3://b/configs/data/raw`. Absolute paths and URLs come back unchanged.
    """
    if is_url(location):
        return location
    location = os.path.expanduser(location)
    if os.path.isabs(location):
        return location
    if is_url(source):
        scheme, rest = source.split("://", 1)
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(rest), location))
        return f"{scheme}://{joined}"
    return os.path.normpath(os.path.join(os.path.dirname(source), location))


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
        return _locate(self.locations, path)

    def problem(self, field: str, message: str) -> ConfigProblem:
        """A problem about a field path, located at the field or its nearest parent."""
        return _problem(self.source, self.locations, field, message)


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
        return _locate(self.locations, path)

    def problem(self, field: str, message: str) -> ConfigProblem:
        """A problem about a field path, located at the field or its nearest parent."""
        return _problem(self.source, self.locations, field, message)

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
    name = _normalise_source(source)
    try:
        raw = _read_bytes(name) if text is None else text
        data_bytes = raw.encode("utf-8") if isinstance(raw, str) else raw
        decoded = raw if isinstance(raw, str) else _decode(name, raw)
    except ConfigError as exc:
        return ParsedConfig(name, None, None, None, sorted_problems(exc.problems))
    sha256 = hashlib.sha256(data_bytes).hexdigest()
    if decoded.startswith("\ufeff"):
        decoded = decoded[1:]

    root, data, problems = _parse(name, decoded)
    if root is None:
        return ParsedConfig(name, sha256, decoded, None, sorted_problems(problems))
    keys, values = _positions(root)
    locations = {path: keys.get(path, values[path]) for path in values}

    config: StudyConfig | None = None
    if not isinstance(data, dict):
        kind = _kind(data)
        problems.append(
            ConfigProblem(
                name,
                *_pos(root),
                "",
                f"the top level must be a mapping of fields (study:, data:, output: ...), not {kind}",
            )
        )
    else:
        try:
            config = StudyConfig.model_validate(data)  # by the model of the workflow type it names
        except pydantic.ValidationError as exc:
            problems.extend(_translate(name, root, exc.errors(), model_for(data.get("workflow"))))

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
    name = _normalise_source(source)
    decoded = _decode(name, _read_bytes(name)).removeprefix("\ufeff")
    if not decoded.strip():
        return model.model_validate({})  # an empty file: every default
    root, data, problems = _parse(name, decoded)
    if root is not None and not problems:
        try:
            return model.model_validate(data if data is not None else {})
        except pydantic.ValidationError as exc:
            problems.extend(_translate(name, root, exc.errors(), model))
    raise ConfigError(sorted_problems(problems))


def _locate(locations: dict[str, Position], path: str) -> Position | None:
    current: str | None = path
    while current is not None:
        if current in locations:
            return locations[current]
        current = parent_path(current)
    return None


def _problem(source: str, locations: dict[str, Position], field: str, message: str) -> ConfigProblem:
    where = _locate(locations, field)
    line, column = where if where else (None, None)
    return ConfigProblem(source, line, column, field, message)


# --- reading ---------------------------------------------------------------------------


def _normalise_source(source: str | Path) -> str:
    if is_url(source):
        return str(source)
    return os.path.abspath(os.path.expanduser(os.fspath(source)))


def _read_bytes(source: str) -> bytes:
    if is_url(source):
        # Through the storage layer: the same S3 endpoint, region and credentials as the data.
        from biomarkerflow.errors import StorageError
        from biomarkerflow.storage import store

        try:
            return store.read_bytes(source)
        except StorageError as exc:
            missing = isinstance(exc.__cause__, FileNotFoundError)
            message = "file not found" if missing else f"cannot read the file: {exc.message}"
            raise ConfigError([ConfigProblem(source, None, None, "", message)]) from exc
    try:
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(source, None, None, "", "file not found")]) from None
    except IsADirectoryError:
        message = "this is a folder, not a config file"
        raise ConfigError([ConfigProblem(source, None, None, "", message)]) from None
    except OSError as exc:
        message = f"cannot read the file: {exc}"
        raise ConfigError([ConfigProblem(source, None, None, "", message)]) from exc


def _decode(source: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        message = "the file is not UTF-8 text; save it as UTF-8"
        raise ConfigError([ConfigProblem(source, line, column, "", message)]) from None


# --- YAML ------------------------------------------------------------------------------


def _parse(source: str, text: str) -> tuple[Node | None, Any, list[ConfigProblem]]:
    """Compose the YAML (keeping marks), find duplicate keys, then construct safely."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            message = "the file is empty; a study config starts with e.g. 'study: my-study'"
            return None, None, [ConfigProblem(source, 1, 1, "", message)]
        problems = list(_duplicate_keys(source, root))
        # Constructing merges `<<` keys into the nodes in place, so the walk that
        # records positions afterwards sees the same keys as the constructed data.
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        return None, None, [_syntax_problem(source, exc)]
    except yaml.YAMLError as exc:
        return None, None, [ConfigProblem(source, None, None, "", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    return root, data, problems


def _syntax_problem(source: str, exc: yaml.MarkedYAMLError) -> ConfigProblem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    problem = exc.problem or str(exc)
    if isinstance(exc, ConstructorError):
        message = f"unsupported YAML ({problem}); write plain values, lists and mappings"
    elif "expected a single document" in (exc.context or ""):
        message = "the file holds more than one YAML document ('---'); write one study per file"
    else:
        message = f"invalid YAML: {problem}"
        if exc.context:
            message += f" ({exc.context}"
            if exc.context_mark and exc.context_mark is not mark:
                message += f" on line {exc.context_mark.line + 1}"
            message += ")"
        if "'\\t'" in problem:
            message += "; indent with spaces, not tabs"
    return ConfigProblem(source, line, column, "", message)


def _duplicate_keys(source: str, root: Node) -> Iterator[ConfigProblem]:
    for path, node in _walk_nodes(root):
        if not isinstance(node, MappingNode):
            continue
        seen: dict[tuple[str, str], Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                first = seen[ident].start_mark.line + 1
                yield ConfigProblem(
                    source,
                    *_pos(key_node),
                    _join(path, key_node.value),
                    f"duplicate key '{key_node.value}': it is already set on line {first}, "
                    "and YAML would silently keep only this last one",
                )
            seen[ident] = key_node


def _walk_nodes(root: Node) -> Iterator[tuple[str, Node]]:
    """(path, node) for every node, depth first; aliases to an ancestor are not followed."""
    stack: list[tuple[str, Node, frozenset[int]]] = [("", root, frozenset())]
    while stack:
        path, node, ancestors = stack.pop()
        yield path, node
        inner = ancestors | {id(node)}
        children: list[tuple[str, Node]] = []
        if isinstance(node, MappingNode):
            children = [(_join(path, _key_text(k)), v) for k, v in node.value]
        elif isinstance(node, SequenceNode):
            children = [(f"{path}[{i}]", item) for i, item in enumerate(node.value)]
        for child_path, child in reversed(children):
            if id(child) not in inner:
                stack.append((child_path, child, inner))


def _positions(root: Node) -> tuple[dict[str, Position], dict[str, Position]]:
    """Where each field's key is written, and where each field's value starts."""
    keys: dict[str, Position] = {}
    values: dict[str, Position] = {"": _pos(root)}
    for path, node in _walk_nodes(root):
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:  # later duplicates win, as in YAML
                child = _join(path, _key_text(key_node))
                keys[child] = _pos(key_node)
                values[child] = _pos(key_node if _is_empty(value_node) else value_node)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                values[f"{path}[{i}]"] = _pos(item)
    return keys, values


def _key_matches(node: Node, element: str | int) -> bool:
    """Whether a YAML key is the dict key pydantic names (`12`, or `1` for `yes`)."""
    if _key_text(node) == str(element):
        return True
    if isinstance(element, str) or not isinstance(node, ScalarNode) or node.style is not None:
        return False
    try:
        return bool(yaml.safe_load(node.value) == element)
    except yaml.YAMLError:
        return False


def _pos(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _key_text(node: Node) -> str:
    return node.value if isinstance(node, ScalarNode) else "?"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value == ""


# --- pydantic errors -> located problems -------------------------------------------------


@dataclass
class _Spot:
    """Where a pydantic error location lands in the YAML tree."""

    path: str
    key: Node | None
    value: Node
    depth: int  # loc elements that matched a YAML key or item
    unmatched: list[str | int]  # loc elements with no YAML counterpart (union tags, missing)
    branch: str  # the path where the first unmatched element was met
    at_key: bool = False  # the error is about a mapping key ('[key]')


def _resolve(root: Node, loc: Sequence[str | int]) -> _Spot:
    spot = _Spot(path="", key=None, value=root, depth=0, unmatched=[], branch="")
    for element in loc:
        if element == "[key]":
            spot.at_key = True
            continue
        node = spot.value
        if isinstance(node, MappingNode):
            match = [(k, v) for k, v in node.value if _key_matches(k, element)]
            if match:
                spot.key, spot.value = match[-1]
                spot.path = _join(spot.path, _key_text(spot.key))
                spot.depth += 1
                continue
        elif isinstance(node, SequenceNode) and isinstance(element, int) and 0 <= element < len(node.value):
            spot.key, spot.value = None, node.value[element]
            spot.path = f"{spot.path}[{element}]"
            spot.depth += 1
            continue
        if not spot.unmatched:
            spot.branch = spot.path
        spot.unmatched.append(element)
    return spot


_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (name: value)",
    "model_type": "a mapping (name: value)",
    "model_attributes_type": "a mapping (name: value)",
}


def _translate(
    source: str, root: Node, errors: list[Any], model: type[pydantic.BaseModel] = StudyConfig
) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    unions: dict[str, list[tuple[Any, _Spot]]] = {}
    for error in errors:
        spot = _resolve(root, error["loc"])
        spot.at_key = spot.at_key or error["type"] == "invalid_key"
        if error["type"] == "missing":
            problems.append(_missing(source, error, spot))
        elif spot.unmatched:
            # Unmatched loc elements are pydantic's union-branch tags ('str',
            # 'dict[str,...]'): one YAML value failed several alternatives.
            unions.setdefault(spot.branch, []).append((error, spot))
        else:
            problems.append(_located(source, error, spot, _message(error, spot, model)))
    for group in unions.values():
        deepest = max(spot.depth for _, spot in group)
        chosen = [(e, s) for e, s in group if s.depth == deepest]
        if len(chosen) > 1 and all(e["type"] in _EXPECTED for e, _ in chosen):
            kinds = list(dict.fromkeys(_EXPECTED[e["type"]].split(" (")[0] for e, _ in chosen))
            error, spot = chosen[0]
            message = f"expected {' or '.join(kinds)}, got {_show(error['input'])}"
            problems.append(_located(source, error, spot, message))
        else:
            seen: set[str] = set()
            for error, spot in chosen:
                message = _message(error, spot, model)
                if message not in seen:
                    seen.add(message)
                    problems.append(_located(source, error, spot, message))
    return problems


def _located(source: str, error: Any, spot: _Spot, message: str) -> ConfigProblem:
    if error["type"] == "extra_forbidden" or spot.at_key:
        node = spot.key or spot.value
    elif spot.key is not None and _is_empty(spot.value):
        node = spot.key
    else:
        node = spot.value
    return ConfigProblem(source, *_pos(node), spot.path, message)


def _missing(source: str, error: Any, spot: _Spot) -> ConfigProblem:
    name = str(error["loc"][-1])
    parent = spot.path
    anchor = spot.key if spot.key is not None else spot.value
    return ConfigProblem(source, *_pos(anchor), _join(parent, name), f"missing required field '{name}'")


def _message(error: Any, spot: _Spot, model: type[pydantic.BaseModel] = StudyConfig) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    shown = _show(value)
    if kind == "extra_forbidden":
        return _unknown_field(error["loc"], model)
    if kind == "invalid_key":
        return f"names here must be text, got {shown}; put it in quotes"
    if kind in _EXPECTED:
        if spot.at_key:
            return f"names here must be text, got {shown}; put it in quotes"
        expected = _EXPECTED[kind]
        if value is None:
            return f"expected {expected}, but the value is empty"
        message = f"expected {expected}, got {shown}"
        if kind == "string_type" and isinstance(value, int | float | bool | date):
            raw = spot.value.value if isinstance(spot.value, ScalarNode) else str(value)
            message += f"; put it in quotes: '{raw}'"
        elif kind == "list_type" and isinstance(value, str):
            message += f"; write a list, e.g. ['{value}']"
        return message
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": ("at least", "ge"),
            "greater_than": ("more than", "gt"),
            "less_than_equal": ("at most", "le"),
            "less_than": ("less than", "lt"),
        }[kind]
        return f"must be {words[0]} {_number(ctx.get(words[1]))}, got {shown}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "string_pattern_mismatch":
        if tuple(error["loc"]) == ("study",):
            return (
                f"{shown} is not a valid study id; use letters, digits, '-', '_' and '.', "
                "starting with a letter or digit"
            )
        return f"{shown} does not have the expected form (pattern {ctx.get('pattern')})"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if value is not None and not isinstance(value, dict | list) and str(value) not in message:
        message += f" (got {shown})"
    return message


def _unknown_field(loc: Sequence[str | int], model: type[pydantic.BaseModel] = StudyConfig) -> str:
    name = str(loc[-1])
    parent = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
    allowed = _fields_at(loc[:-1], model)
    message = f"unknown field '{name}'"
    if not allowed:
        return message
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        return f"{message}; did you mean '{close[0]}'?"
    where = f"'{parent}'" if parent else "the top level"
    return f"{message}; {where} accepts: {', '.join(allowed)}"


def _fields_at(loc: Sequence[str | int], model: type[pydantic.BaseModel] = StudyConfig) -> list[str]:
    """Field names of the model found at a loc, walking the root model's annotations."""
    annotation: Any = model
    for element in loc:
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            info = annotation.model_fields.get(str(element))
            if info is None:
                return []
            annotation = info.annotation
        elif typing.get_origin(annotation) is list and isinstance(element, int):
            annotation = typing.get_args(annotation)[0]
        else:
            return []
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return list(annotation.model_fields)
    return []


def _show(value: Any) -> str:
    """A value as a scientist would recognise it from the YAML, quoted and short."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"'{text}'"
    if isinstance(value, int | float | date):
        return str(value)
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    except yaml.YAMLError:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _kind(data: Any) -> str:
    if data is None:
        return "an empty value"
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return f"the text {_show(data)}"
    return f"the value {_show(data)}"


def sorted_problems(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """Problems in reading order: by file, line and column; unlocated ones last."""
    big = 1 << 62
    return sorted(
        problems,
        key=lambda p: (p.file, p.line if p.line is not None else big, p.column or 0, p.field),
    )
