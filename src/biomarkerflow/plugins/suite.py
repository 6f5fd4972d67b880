"""The checks every workflow type must pass (in the spirit of scikit-learn's `check_estimator`).

`check_workflow_type(workflow_type, example)` raises AssertionError naming the promise of
the contract (plugins/contract.py) a type breaks; `example` is a valid study config of the
type, as YAML would give it. Run by the tests on every type, and meant for a type's own
package to run on itself.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from biomarkerflow.config.schema import DataConfig, StudyConfig
from biomarkerflow.plugins import registry
from biomarkerflow.plugins.contract import RuntimeRequest, WorkflowType

__all__ = ["HEAVY_MODULES", "check_workflow_type"]

# What importing a type must not import: `status`, `validate` and the registry stay fast.
HEAVY_MODULES = ("pandas", "sklearn", "skdh")


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{what} must be JSON values: {exc}") from exc


def _check_model(workflow_type: WorkflowType, example: Mapping[str, Any]) -> StudyConfig:
    model = workflow_type.config_model
    assert issubclass(model, StudyConfig), "config_model must subclass the core StudyConfig"
    data = model.model_fields["data"].annotation
    assert isinstance(data, type) and issubclass(data, DataConfig), "its `data` must subclass the core DataConfig"
    assert model.model_config.get("extra") == "forbid", "config_model must refuse unknown keys"
    assert model.model_config.get("frozen"), "config_model must be frozen"
    config = StudyConfig.model_validate(dict(example))
    assert type(config) is model, f"a config naming {workflow_type.name!r} must validate to its config_model"
    stored = config.model_dump(mode="json")
    assert StudyConfig.model_validate(stored) == config, "a stored config must validate to the same config"
    unknown = set(workflow_type.checked_sections) - set(model.model_fields)
    assert not unknown, f"checked_sections names no config section: {sorted(unknown)}"
    return config


def _check_identities(workflow_type: WorkflowType, config: StudyConfig) -> None:
    stored = config.model_dump(mode="json")
    identity = workflow_type.results_identity(stored)
    assert _json(identity, "results_identity") == _json(workflow_type.results_identity(stored), "results_identity")
    assert not {"workflow", "metadata_columns"} & set(identity), "results_identity must not use the platform's keys"
    _json(workflow_type.cost_identity(config), "cost_identity")
    request, problems = workflow_type.runtime_request(stored)
    assert request is None or isinstance(request, RuntimeRequest), "runtime_request gives a RuntimeRequest or None"
    assert problems == [], f"a valid config's pin has no problems, got {problems}"


def _check_job_values(workflow_type: WorkflowType, config: StudyConfig) -> None:
    plan = workflow_type.plan_job(config)
    try:
        pickle.loads(pickle.dumps(plan))  # it crosses into the runtime's process
    except Exception as exc:  # noqa: BLE001 - whatever pickle raises, the promise is broken
        raise AssertionError(f"plan_job must give plain picklable values: {exc}") from exc
    inputs = workflow_type.subject_inputs(config, None)
    assert isinstance(inputs, dict), "subject_inputs gives a dict, also for a subject without metadata"
    _json(inputs, "subject_inputs")
    wanted = workflow_type.header_bytes("recording.bin")
    assert isinstance(wanted, int) and wanted >= 0, "header_bytes is a byte count, 0 for nothing"
    _json(workflow_type.header_facts(b"", 0, "recording.bin"), "header_facts")


def _check_quality_measures(workflow_type: WorkflowType) -> None:
    for measure, what in workflow_type.quality_measures.items():
        # A gate is min_<measure>/max_<measure> (config/schema.py): the name must fit there.
        assert re.fullmatch(r"[a-z][a-z0-9_]*", measure), f"quality measure {measure!r}: lowercase, digits, _"
        assert isinstance(what, str) and what, f"quality measure {measure!r} says what it is"
    assert all(isinstance(t, str) and t for t in workflow_type.quality_tables), "quality_tables are table names"


def _check_cheap_import(workflow_type: WorkflowType) -> None:
    reference = registry.reference(workflow_type.name)
    script = (
        "import sys; from biomarkerflow.plugins import registry; "
        f"registry.load({reference!r}); print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    heavy = found.stdout.strip()
    assert not heavy, f"importing {reference} imports {heavy}: import it inside warm_up, check or run_job"


def check_workflow_type(workflow_type: WorkflowType, example: Mapping[str, Any]) -> None:
    """Raise AssertionError unless `workflow_type` keeps the contract, on the valid config `example`."""
    assert isinstance(workflow_type, WorkflowType), "a type is a WorkflowType instance"
    assert isinstance(workflow_type.name, str) and workflow_type.name, "a type has a name"
    assert registry.get(workflow_type.name) is workflow_type, "the entry point of its name gives this type"
    config = _check_model(workflow_type, example)
    _check_identities(workflow_type, config)
    _check_job_values(workflow_type, config)
    _check_quality_measures(workflow_type)
    _check_cheap_import(workflow_type)
