"""The registry of SKDH processing steps a study config may name.

A config never names arbitrary Python objects: a step is a class exported by one of
SKDH's public modules (`skdh.io`, `skdh.preprocessing`, ...) and a subclass of
`skdh.BaseProcess`. Parameters are checked against the step's signature in the
SKDH that is installed in the runtime doing the check.
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath
from typing import Any

# Order matters only for error messages listing candidates.
PUBLIC_MODULES: tuple[str, ...] = (
    "io",
    "preprocessing",
    "activity",
    "sleep",
    "gait",
    "context",
    "sit2stand",
)

# Default reader per file extension when a study says `reader: auto`.
READERS_BY_EXTENSION: dict[str, str] = {
    ".cwa": "ReadCwa",
    ".bin": "ReadBin",
    ".csv": "ReadCSV",
    ".h5": "ReadApdmH5",
    ".npz": "ReadNumpyFile",
    ".avro": "ReadEmpaticaAvro",
    ".gt3x": "ReadGt3x",  # ours (readers.py): SKDH has none
}


@dataclass(frozen=True)
class ParamProblem:
    """A parameter the step does not accept; `param` is None for step-level problems."""

    param: str | None
    message: str


@cache
def available_steps() -> dict[str, type]:
    """Map step name -> class for every BaseProcess exported by SKDH's public modules."""
    import skdh

    steps: dict[str, type] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(f"skdh.{module_name}")
        exported = getattr(module, "__all__", None)
        if exported is None:
            # skdh.gait and skdh.context have no __all__ (GaitLumbar, Ambulation would
            # be missing): take the public classes defined inside that module instead.
            exported = [
                n
                for n in dir(module)
                if not n.startswith("_") and _defined_in(getattr(module, n, None), module.__name__)
            ]
        for name in exported:
            obj = getattr(module, name, None)
            if inspect.isclass(obj) and issubclass(obj, skdh.BaseProcess):
                steps.setdefault(name, obj)
    steps.update(_own_readers())
    return steps


def _own_readers() -> dict[str, type]:
    """Our readers for formats SKDH cannot read; none with an SKDH too old for them."""
    try:
        from biomarkerflow.plugins.skdh.readers import READERS
    except ImportError:
        return {}
    return dict(READERS)


def _defined_in(obj: object, module_name: str) -> bool:
    defined = getattr(obj, "__module__", None) or ""
    return defined == module_name or defined.startswith(module_name + ".")


def reader_names() -> list[str]:
    """Names of the steps that read a file (those exported by `skdh.io`)."""
    own = _own_readers()
    return sorted(n for n, cls in available_steps().items() if cls.__module__.startswith("skdh.io") or n in own)


def find_step(name: str) -> type | None:
    return available_steps().get(name)


def reader_for_file(file_name: str) -> str | None:
    """The default reader for a file name, from its extension (None if unknown)."""
    return READERS_BY_EXTENSION.get(PurePosixPath(file_name).suffix.lower())


def _signature_params(step_cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    init: Any = step_cls.__init__  # type: ignore[misc]  # the class's own constructor, on purpose
    signature = inspect.signature(init)
    params = {n: p for n, p in signature.parameters.items() if n != "self"}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    return named, accepts_any


def coerce_params(step_cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """YAML has no tuples: turn lists into tuples where SKDH's default is a tuple.

    SKDH uses some of these values as dictionary keys (e.g. `day_window`), so a list
    would fail deep inside a run instead of at validation.
    """
    named, _ = _signature_params(step_cls)
    out: dict[str, Any] = {}
    for key, value in params.items():
        default = named[key].default if key in named else None
        if isinstance(value, list) and isinstance(default, tuple):
            value = tuple(value)
        out[key] = value
    return out


def check_params(step_name: str, params: dict[str, Any]) -> list[ParamProblem]:
    """Problems with a step and its parameters, empty if SKDH would accept them."""
    step_cls = find_step(step_name)
    if step_cls is None:
        return [ParamProblem(None, unknown_step_message(step_name))]
    named, accepts_any = _signature_params(step_cls)
    problems = [
        ParamProblem(key, f"{step_name} has no parameter '{key}' (accepted: {', '.join(named) or 'none'})")
        for key in params
        if key not in named and not accepts_any
    ]
    if problems:
        return problems
    required = [
        n
        for n, p in named.items()
        if p.default is inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_POSITIONAL and n not in params
    ]
    if required:
        listed = ", ".join(required)
        example = f"{{{step_name}: {{{required[0]}: ...}}}}"
        return [ParamProblem(None, f"{step_name} needs the parameter(s) {listed}, e.g. {example}")]
    # Before the constructor: SKDH stores most values unchecked, so a wrong type passes
    # it and fails deep inside a run (`min_bout_time: five` -> UFuncTypeError), or the
    # constructor fails with a message that does not name the parameter.
    wrong_types = check_types(step_cls, params)
    if wrong_types:
        return wrong_types
    # SKDH constructors check some values themselves, by raising or (e.g. an unknown
    # `cutpoints` name) only by warning and silently using a default instead: both
    # are config problems, since the study would not run as written.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            step_cls(**coerce_params(step_cls, params))
        except Exception as exc:  # noqa: BLE001 - any constructor failure is a config problem
            return [ParamProblem(None, f"{step_name} rejects these parameters: {exc}")]
    messages = dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    return [
        ParamProblem(None, f"{step_name} does not accept these parameters as written: {message}")
        for message in messages
    ]


# --- parameter types -------------------------------------------------------------------
#
# The type a parameter expects comes from its default in the pinned SKDH (5 -> a number,
# True -> true or false, (12, 24) -> a list of numbers; None -> anything), widened by the
# type its numpydoc "Parameters" section states when that names more ("shipping_criteria :
# {bool, int, list}"). The docstring only ever widens: a terse or wrong docstring can make
# the check miss a mistake, never refuse a value SKDH takes.

NUMBER, BOOL, TEXT, LIST, MAPPING, NONE = "number", "bool", "text", "list", "mapping", "none"

_KIND_WORDS = {
    NUMBER: "a number",
    BOOL: "true or false",
    TEXT: "text",
    LIST: "a list",
    MAPPING: "a mapping (name: value)",
}

_ITEM_WORDS = {NUMBER: "numbers", BOOL: "true/false values", TEXT: "text values", MAPPING: "mappings"}

# Words of numpydoc type descriptions -> the YAML value kinds they allow.
_DOC_WORDS: dict[str, str | None] = {
    "int": NUMBER,
    "integer": NUMBER,
    "float": NUMBER,
    "number": NUMBER,
    "numeric": NUMBER,
    "bool": BOOL,
    "boolean": BOOL,
    "str": TEXT,
    "string": TEXT,
    "list": LIST,
    "tuple": LIST,
    "iterable": LIST,
    "array-like": LIST,
    "array_like": LIST,
    "list-like": LIST,
    "sequence": LIST,
    "array": LIST,
    "ndarray": LIST,
    "numpy.ndarray": LIST,
    "dict": MAPPING,
    "dictionary": MAPPING,
    "mapping": MAPPING,
    "none": NONE,
    # Words that allow nothing a YAML file can hold, or only qualify the others.
    "callable": None,
    "function": None,
    "optional": None,
    "default": None,
    "of": None,
    "or": None,
}


@dataclass(frozen=True)
class Expected:
    """The kinds of YAML value a parameter takes; `items` the kinds of a list's items (empty: any)."""

    kinds: frozenset[str]
    items: frozenset[str] = frozenset()


def value_kind(value: Any) -> str | None:
    """The YAML kind of a value: number, bool, text, list, mapping or none (None for anything else)."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return TEXT
    if isinstance(value, list | tuple):
        return LIST
    if isinstance(value, dict):
        return MAPPING
    return None


def expected_type(default: Any, documented: str | None) -> Expected | None:
    """What a parameter takes, from its default and documented type; None when anything goes."""
    kind = value_kind(default)
    if kind is None or kind == NONE:  # no default value, or a None default: SKDH decides
        return None
    items: frozenset[str] = frozenset()
    if kind == LIST and default:
        item_kinds = {value_kind(item) for item in default}
        if None not in item_kinds and NONE not in item_kinds and LIST not in item_kinds:
            items = frozenset(k for k in item_kinds if k is not None)
    kinds = {kind}
    if documented is not None:
        allowed = _documented_kinds(documented)
        if allowed is None:  # a type we cannot judge (e.g. a class): do not guess
            return None
        kinds |= allowed
    return Expected(frozenset(kinds), items)


def _documented_kinds(text: str) -> set[str] | None:
    """The kinds a numpydoc type ("{None, int, list-like}, optional") allows; None if it names
    something else (a class, a date ...) whose YAML form we cannot tell."""
    kinds: set[str] = set()
    quoted = re.compile(r"(['\"]).*?\1")  # a literal choice, e.g. "AP CWT"
    if quoted.search(text):
        kinds.add(TEXT)
    for word in re.split(r"[\s,{}()\[\]|]+", quoted.sub(" ", text).strip().lower()):
        word = word.rstrip(".:;")
        if not word:
            continue
        if re.fullmatch(r"-?\d+(\.\d*)?", word):  # a literal number, e.g. {1, 2, 3}
            kinds.add(NUMBER)
        elif word in _DOC_WORDS:
            found = _DOC_WORDS[word]
            if found is not None:
                kinds.add(found)
        else:
            return None
    return kinds


_DOC_PARAM = re.compile(r"^(?P<names>\w+(?:\s*,\s*\w+)*)\s*:\s*(?P<type>\S.*)$")


@cache
def documented_types(step_cls: type) -> dict[str, str]:
    """Parameter name -> the type its numpydoc docstring states (class and __init__ docstrings)."""
    found: dict[str, str] = {}
    init: Any = step_cls.__init__  # type: ignore[misc]  # the class's own constructor, on purpose
    for doc in (inspect.getdoc(step_cls), inspect.getdoc(init)):
        for line in (doc or "").splitlines():
            match = _DOC_PARAM.match(line)  # parameter lines start at column 0 after cleandoc
            if match:
                for name in re.split(r"\s*,\s*", match["names"]):
                    found.setdefault(name, match["type"])
    return found


def check_types(step_cls: type, params: dict[str, Any]) -> list[ParamProblem]:
    """Values whose YAML type the step's parameter does not take, each with what it expects."""
    named, _ = _signature_params(step_cls)
    documented = documented_types(step_cls)
    problems: list[ParamProblem] = []
    for key, value in params.items():
        if key not in named or value is None:
            # null is let through everywhere: SKDH uses None for "off" or "use the default"
            # (e.g. `day_window: null`), and the checks after this one know those cases.
            continue
        default = named[key].default
        expected = expected_type(None if default is inspect.Parameter.empty else default, documented.get(key))
        message = None if expected is None else _type_mismatch(key, value, default, expected)
        if message is not None:
            problems.append(ParamProblem(key, message))
    return problems


def _type_mismatch(name: str, value: Any, default: Any, expected: Expected) -> str | None:
    kind = value_kind(value)
    if kind in expected.kinds:
        if kind != LIST or not expected.items:
            return None
        wrong = [item for item in value if value_kind(item) not in expected.items]
        if not wrong:
            return None
        of = " or ".join(_ITEM_WORDS[k] for k in sorted(expected.items))
        return (
            f"expects a list of {of} (default {show(default)}), got {show(value)}: "
            f"{show(wrong[0])} is not one; e.g. {name}: {show(default)}"
        )
    wanted = _either(expected)
    message = f"expects {wanted} (default {show(default)}), got {show(value)}"
    if kind == TEXT and NUMBER in expected.kinds and _is_number(value):
        return f"{message}; write the number without quotes: {name}: {value.strip()}"
    if kind == TEXT and BOOL in expected.kinds and value.strip().lower() in ("true", "false"):
        return f"{message}; write it without quotes: {name}: {value.strip().lower()}"
    return f"{message}; write {wanted}, e.g. {name}: {show(default)}"


def _either(expected: Expected) -> str:
    """'a number', 'text or a number', 'a list of numbers' ..."""
    words = []
    for kind in _KIND_WORDS:
        if kind in expected.kinds:
            word = _KIND_WORDS[kind]
            if kind == LIST and expected.items:
                word += " of " + " or ".join(_ITEM_WORDS[k] for k in sorted(expected.items))
            words.append(word)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def show(value: Any) -> str:
    """A value as the study's YAML would write it: 'text', 5, true, [12, 24], {a: 1}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if "'" not in value else f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def resolve_params(step_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of the step as it will run: the study's values over SKDH's defaults."""
    step_cls = available_steps()[step_name]
    named, _ = _signature_params(step_cls)
    resolved = {n: p.default for n, p in named.items() if p.default is not inspect.Parameter.empty}
    resolved.update(coerce_params(step_cls, params))
    return resolved


def unknown_step_message(step_name: str) -> str:
    import difflib

    close = difflib.get_close_matches(step_name, list(available_steps()), n=3)
    suggestion = f"; did you mean {' or '.join(close)}?" if close else ""
    modules = ", ".join(f"skdh.{m}" for m in PUBLIC_MODULES)
    return f"unknown pipeline step '{step_name}' (not a process in {modules}){suggestion}"
