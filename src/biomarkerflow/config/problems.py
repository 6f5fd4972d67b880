"""Located problems: pydantic's validation errors turned into `file:line:column: field: message`.

Each pydantic error location (`('requirements', 'metadata', 2)`, with union-branch tags
mixed in) is resolved against the YAML node tree to the key or value it is about, and
its error type is worded the way a scientist reading the YAML would put it.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pydantic
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.config.yaml_positions import Position, is_empty, join_path, key_matches, key_text, position
from biomarkerflow.errors import ConfigProblem

__all__ = ["kind_of", "locate", "parent_path", "problem_at", "sorted_problems", "translate_errors"]

_LAST_PART = re.compile(r"(\.[^.\[\]]*|\[\d+\])$")


def parent_path(path: str) -> str | None:
    """`a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> `` -> None."""
    if not path:
        return None
    match = _LAST_PART.search(path)
    return path[: match.start()] if match else ""


def locate(locations: dict[str, Position], path: str) -> Position | None:
    current: str | None = path
    while current is not None:
        if current in locations:
            return locations[current]
        current = parent_path(current)
    return None


def problem_at(source: str, locations: dict[str, Position], field: str, message: str) -> ConfigProblem:
    where = locate(locations, field)
    line, column = where if where else (None, None)
    return ConfigProblem(source, line, column, field, message)


def sorted_problems(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """Problems in reading order: by file, line and column; unlocated ones last."""
    big = 1 << 62
    return sorted(
        problems,
        key=lambda p: (p.file, p.line if p.line is not None else big, p.column or 0, p.field),
    )


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
            match = [(k, v) for k, v in node.value if key_matches(k, element)]
            if match:
                spot.key, spot.value = match[-1]
                spot.path = join_path(spot.path, key_text(spot.key))
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


def translate_errors(
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
    elif spot.key is not None and is_empty(spot.value):
        node = spot.key
    else:
        node = spot.value
    return ConfigProblem(source, *position(node), spot.path, message)


def _missing(source: str, error: Any, spot: _Spot) -> ConfigProblem:
    name = str(error["loc"][-1])
    parent = spot.path
    anchor = spot.key if spot.key is not None else spot.value
    return ConfigProblem(source, *position(anchor), join_path(parent, name), f"missing required field '{name}'")


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


def kind_of(data: Any) -> str:
    if data is None:
        return "an empty value"
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return f"the text {_show(data)}"
    return f"the value {_show(data)}"
