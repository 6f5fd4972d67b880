"""The registry of SKDH processing steps a study config may name.

A config never names arbitrary Python objects: a step is a class exported by one of
SKDH's public modules (`skdh.io`, `skdh.preprocessing`, ...) and a subclass of
`skdh.BaseProcess`. Parameters are checked against the step's signature in the
SKDH that is installed in the runtime doing the check.
"""

from __future__ import annotations

import importlib
import inspect
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
    return steps


def _defined_in(obj: object, module_name: str) -> bool:
    defined = getattr(obj, "__module__", None) or ""
    return defined == module_name or defined.startswith(module_name + ".")


def reader_names() -> list[str]:
    """Names of the steps that read a file (those exported by `skdh.io`)."""
    return sorted(n for n, cls in available_steps().items() if cls.__module__.startswith("skdh.io"))


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
