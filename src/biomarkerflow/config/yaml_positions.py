"""Parsing YAML while keeping where every node is written.

PyYAML's `safe_load` forgets where values came from and silently keeps the last of
two equal keys. Here the document is first *composed* with `yaml.SafeLoader` (which
keeps node marks), checked for duplicate keys, then constructed with the same safe
constructor, so no arbitrary Python object can ever be built from a config. Positions
are 1-based (line, column); field paths are dotted (`requirements.metadata[2]`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from biomarkerflow.errors import ConfigProblem

__all__ = [
    "Position",
    "is_empty",
    "join_path",
    "key_matches",
    "key_text",
    "node_positions",
    "parse_yaml",
    "position",
    "walk_nodes",
]

Position = tuple[int, int]


def parse_yaml(source: str, text: str) -> tuple[Node | None, Any, list[ConfigProblem]]:
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
    for path, node in walk_nodes(root):
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
                    *position(key_node),
                    join_path(path, key_node.value),
                    f"duplicate key '{key_node.value}': it is already set on line {first}, "
                    "and YAML would silently keep only this last one",
                )
            seen[ident] = key_node


def walk_nodes(root: Node) -> Iterator[tuple[str, Node]]:
    """(path, node) for every node, depth first; aliases to an ancestor are not followed."""
    stack: list[tuple[str, Node, frozenset[int]]] = [("", root, frozenset())]
    while stack:
        path, node, ancestors = stack.pop()
        yield path, node
        inner = ancestors | {id(node)}
        children: list[tuple[str, Node]] = []
        if isinstance(node, MappingNode):
            children = [(join_path(path, key_text(k)), v) for k, v in node.value]
        elif isinstance(node, SequenceNode):
            children = [(f"{path}[{i}]", item) for i, item in enumerate(node.value)]
        for child_path, child in reversed(children):
            if id(child) not in inner:
                stack.append((child_path, child, inner))


def node_positions(root: Node) -> tuple[dict[str, Position], dict[str, Position]]:
    """Where each field's key is written, and where each field's value starts."""
    keys: dict[str, Position] = {}
    values: dict[str, Position] = {"": position(root)}
    for path, node in walk_nodes(root):
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:  # later duplicates win, as in YAML
                child = join_path(path, key_text(key_node))
                keys[child] = position(key_node)
                values[child] = position(key_node if is_empty(value_node) else value_node)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                values[f"{path}[{i}]"] = position(item)
    return keys, values


def key_matches(node: Node, element: str | int) -> bool:
    """Whether a YAML key is the dict key pydantic names (`12`, or `1` for `yes`)."""
    if key_text(node) == str(element):
        return True
    if isinstance(element, str) or not isinstance(node, ScalarNode) or node.style is not None:
        return False
    try:
        return bool(yaml.safe_load(node.value) == element)
    except yaml.YAMLError:
        return False


def position(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def key_text(node: Node) -> str:
    return node.value if isinstance(node, ScalarNode) else "?"


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def is_empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value == ""
