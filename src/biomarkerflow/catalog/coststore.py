"""What the cost side keeps in the catalog: run history, cost models, estimates, cost rows.

It stores and reads records (`records.Observation`, `CostRow`, `CostModelRecord`,
`EstimateRecord`) that `cost/` computes with; it never imports `cost/` itself.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import ColumnElement, Float, case, extract, func, select, update
from sqlalchemy.orm import Session

from biomarkerflow.catalog.connection import Database, utcnow
from biomarkerflow.catalog.models import CostEstimate, CostModel, DataFile, ImportedRun, Run
from biomarkerflow.catalog.records import CostModelRecord, CostRow, EstimateRecord, MachineRecord, Observation


def _number_fact(session: Session, name: str) -> ColumnElement[Any]:
    """A run's fact `name` where it is a JSON number, else NULL (as `_fact` reads it)."""
    if session.get_bind().dialect.name == "postgresql":
        value = Run.facts.op("->")(name)
        return case((func.json_typeof(value) == "number", Run.facts.op("->>")(name).cast(Float)), else_=None)
    kind = func.json_type(Run.facts, f"$.{name}")
    return case((kind.in_(("integer", "real")), func.json_extract(Run.facts, f"$.{name}").cast(Float)), else_=None)


def _fact(facts: dict[str, Any] | None, name: str) -> float | None:
    """A run's fact as a number for the cost models: the workflow type's facts are any JSON."""
    value = (facts or {}).get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _observation(run: Run, size: int, relative_path: str) -> Observation:
    suffix = PurePosixPath(relative_path).suffix.lower().lstrip(".")
    return Observation(
        pipeline=run.pipeline or "",
        started_at=run.started_at,
        input_bytes=size,
        output_bytes=run.bytes_written or 0,
        wall_seconds=run.wall_seconds or 0.0,
        cpu_seconds=run.cpu_seconds or 0.0,
        peak_rss_bytes=run.peak_rss_bytes or 0,
        recording_seconds=_fact(run.facts, "recording_seconds"),
        sample_rate_hz=_fact(run.facts, "sample_rate_hz"),
        uncompressed_bytes=_fact(run.facts, "uncompressed_bytes"),
        device=suffix or None,
        cost=run.cost,
        machine=run.host,
        **_machine_facts(run.machine),
    )


def _machine_facts(machine: dict[str, Any] | None) -> dict[str, Any]:
    """A run's stored machine as Observation fields (anything but the right types is unknown)."""
    facts = machine or {}
    cores, memory, cpu = facts.get("cores"), facts.get("memory_bytes"), facts.get("cpu")
    number = (int, float)
    return {
        "machine_cores": float(cores) if isinstance(cores, number) and not isinstance(cores, bool) else None,
        "machine_memory_bytes": float(memory) if isinstance(memory, number) and not isinstance(memory, bool) else None,
        "machine_cpu": cpu if isinstance(cpu, str) else None,
    }


def _imported_observation(row: ImportedRun) -> Observation:
    return Observation(
        pipeline=row.pipeline,
        started_at=row.started_at,
        input_bytes=row.input_bytes,
        output_bytes=row.output_bytes,
        wall_seconds=row.wall_seconds,
        cpu_seconds=row.cpu_seconds,
        peak_rss_bytes=row.peak_rss_bytes,
        recording_seconds=row.recording_seconds,
        cost=row.cost,
        machine=row.machine,
        sample_rate_hz=row.sample_rate_hz,
        device=row.device,
        machine_cores=row.machine_cores,
        machine_memory_bytes=row.machine_memory_bytes,
        machine_cpu=row.machine_cpu,
        workflow_type=row.workflow_type,
        steps=tuple(row.steps or ()),
        package=row.package,
    )


def _cost_model_record(row: CostModel) -> CostModelRecord:
    return CostModelRecord(
        id=row.id,
        pipeline=row.pipeline,
        version=row.version,
        status=row.status,
        path=row.path,
        created_at=row.created_at,
        trained_from=row.trained_from,
        trained_to=row.trained_to,
        train_runs=row.train_runs,
        test_runs=row.test_runs,
        metrics=row.metrics,
        note=row.note,
    )


def _estimate_record(row: CostEstimate) -> EstimateRecord:
    return EstimateRecord(
        id=row.id,
        at=row.at,
        pipeline=row.pipeline,
        model_id=row.model_id,
        file_id=row.file_id,
        inputs=row.inputs,
        predicted=row.predicted,
        run_id=row.run_id,
        actual=row.actual,
    )


def pair_with_estimate(session: Session, run: Run) -> None:
    """A succeeded run answers the newest open estimate of its file: keep the pair."""
    estimate = session.scalars(
        select(CostEstimate)
        .where(CostEstimate.file_id == run.file_id, CostEstimate.run_id.is_(None))
        .order_by(CostEstimate.id.desc())
    ).first()
    if estimate is None:
        return
    estimate.run_id = run.id
    estimate.actual = {
        "wall_seconds": run.wall_seconds,
        "cpu_seconds": run.cpu_seconds,
        "peak_rss_bytes": run.peak_rss_bytes,
        "cost": run.cost,
        "price_table": run.price_table,
    }


class CostStore:
    """Run history for the cost models (ours and imported), the model registry, estimates, cost rows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- history ------------------------------------------------------------------------------

    def add_imported_runs(self, rows: list[tuple[str, Observation]]) -> int:
        """Store past runs from elsewhere, each with where it came from (file:line)."""
        now = utcnow()
        with self._db.session() as session:
            session.add_all(
                ImportedRun(
                    pipeline=o.pipeline,
                    started_at=o.started_at,
                    input_bytes=o.input_bytes,
                    output_bytes=o.output_bytes,
                    wall_seconds=o.wall_seconds,
                    cpu_seconds=o.cpu_seconds,
                    peak_rss_bytes=o.peak_rss_bytes,
                    cost=o.cost,
                    machine=o.machine,
                    recording_seconds=o.recording_seconds,
                    sample_rate_hz=o.sample_rate_hz,
                    device=o.device,
                    machine_cores=o.machine_cores,
                    machine_memory_bytes=o.machine_memory_bytes,
                    machine_cpu=o.machine_cpu,
                    workflow_type=o.workflow_type,
                    steps=list(o.steps) or None,
                    package=o.package,
                    source=source,
                    imported_at=now,
                )
                for source, o in rows
            )
        return len(rows)

    def observations(self, pipeline: str | None = None, until: datetime | None = None) -> list[Observation]:
        """Every succeeded run (ours and imported) with its metering, oldest first."""
        with self._db.session() as session:
            ours = (
                select(Run, DataFile.size, DataFile.relative_path)
                .join(DataFile, DataFile.id == Run.file_id)
                .where(Run.outcome == "succeeded", Run.wall_seconds.is_not(None), Run.pipeline.is_not(None))
            )
            imported = select(ImportedRun)
            if pipeline is not None:
                ours = ours.where(Run.pipeline == pipeline)
                imported = imported.where(ImportedRun.pipeline == pipeline)
            if until is not None:
                ours = ours.where(Run.started_at <= until)
                imported = imported.where(ImportedRun.started_at <= until)
            found = [_observation(run, size, path) for run, size, path in session.execute(ours)]
            found += [_imported_observation(row) for row in session.scalars(imported)]
        return sorted(found, key=lambda o: o.started_at)

    def observation_count(self, pipeline: str) -> int:
        """How many runs `observations(pipeline)` would return, counted in the database."""
        with self._db.session() as session:
            ours = session.scalar(
                select(func.count(Run.id)).where(
                    Run.outcome == "succeeded", Run.wall_seconds.is_not(None), Run.pipeline == pipeline
                )
            )
            imported = session.scalar(select(func.count(ImportedRun.id)).where(ImportedRun.pipeline == pipeline))
        return int(ours or 0) + int(imported or 0)

    def pipelines_with_history(self) -> list[str]:
        """Every pipeline with at least one succeeded run, ours or imported."""
        with self._db.session() as session:
            ours = session.scalars(
                select(Run.pipeline).where(Run.outcome == "succeeded", Run.pipeline.is_not(None)).distinct()
            )
            imported = session.scalars(select(ImportedRun.pipeline).distinct())
            return sorted({w for w in ours if w} | set(imported))

    def machines(self) -> list[MachineRecord]:
        """Every machine with succeeded runs, by name, with its newest known figures."""
        found: dict[str, MachineRecord] = {}
        with self._db.session() as session:
            newest = (
                select(Run.host, func.max(Run.id).label("id"), func.count(Run.id).label("runs"))
                .where(Run.outcome == "succeeded", Run.host.is_not(None))
                .group_by(Run.host)
                .subquery()
            )
            for host, machine, runs in session.execute(
                select(newest.c.host, Run.machine, newest.c.runs).join(Run, Run.id == newest.c.id)
            ):
                facts = _machine_facts(machine)
                found[host] = MachineRecord(
                    host, facts["machine_cores"], facts["machine_memory_bytes"], facts["machine_cpu"], runs
                )
            imported = (
                select(
                    ImportedRun.machine,
                    func.max(ImportedRun.machine_cores),
                    func.max(ImportedRun.machine_memory_bytes),
                    func.max(ImportedRun.machine_cpu),
                    func.count(ImportedRun.id),
                )
                .where(ImportedRun.machine.is_not(None))
                .group_by(ImportedRun.machine)
            )
            for name, cores, memory, cpu, runs in session.execute(imported):
                if name and name not in found:
                    found[name] = MachineRecord(name, cores, memory, cpu, runs)
        return [found[name] for name in sorted(found)]

    def cost_summary(self, study_ids: list[str] | None = None) -> list[CostRow]:
        """The finished runs added up in the database by study, pipeline, subject, month,
        outcome and currency: what every cost report groups, without reading each run
        (100k runs: a few thousand rows). `started_at` is the month's first day."""
        year, month = extract("year", Run.started_at), extract("month", Run.started_at)
        succeeded = Run.outcome == "succeeded"
        with self._db.session() as session:
            recording = _number_fact(session, "recording_seconds")
            query = (
                select(
                    Run.study_id,
                    Run.pipeline,
                    DataFile.subject,
                    year,
                    month,
                    succeeded,
                    Run.currency,
                    func.count(Run.id),
                    func.count(Run.id) - func.count(Run.cost),
                    func.sum(Run.cost),
                    func.sum(DataFile.size),
                    func.sum(recording),
                )
                .join(DataFile, DataFile.id == Run.file_id)
                .where(Run.finished_at.is_not(None))
                .group_by(Run.study_id, Run.pipeline, DataFile.subject, year, month, succeeded, Run.currency)
            )
            if study_ids is not None:
                query = query.where(Run.study_id.in_(study_ids))
            return [
                CostRow(
                    study=study,
                    pipeline=pipeline,
                    subject=subject,
                    started_at=datetime(int(y), int(m), 1),
                    succeeded=bool(ok),
                    cost=None if cost is None else float(cost),
                    currency=currency,
                    input_bytes=int(size or 0),
                    recording_seconds=None if seconds is None else float(seconds),
                    runs=int(runs),
                    unpriced_runs=int(unpriced),
                )
                for study, pipeline, subject, y, m, ok, currency, runs, unpriced, cost, size, seconds in (
                    session.execute(query)
                )
            ]

    def cost_rows(self, study_ids: list[str] | None = None) -> list[CostRow]:
        """Every finished run with its cost, subject and input size, for cost reports.

        Only the columns a report needs, as plain rows: a whole run (traceback, notices,
        provenance) per row made 100k runs take 4 s to read."""
        with self._db.session() as session:
            query = (
                select(
                    Run.study_id,
                    Run.pipeline,
                    DataFile.subject,
                    Run.started_at,
                    Run.outcome,
                    Run.cost,
                    Run.currency,
                    DataFile.size,
                    Run.facts,
                )
                .join(DataFile, DataFile.id == Run.file_id)
                .where(Run.finished_at.is_not(None))
                .order_by(Run.started_at)
            )
            if study_ids is not None:
                query = query.where(Run.study_id.in_(study_ids))
            return [
                CostRow(
                    study=study,
                    pipeline=pipeline,
                    subject=subject,
                    started_at=started_at,
                    succeeded=outcome == "succeeded",
                    cost=cost,
                    currency=currency,
                    input_bytes=size,
                    recording_seconds=_fact(facts, "recording_seconds"),
                )
                for study, pipeline, subject, started_at, outcome, cost, currency, size, facts in session.execute(query)
            ]

    # ---- the cost model registry --------------------------------------------------------------

    def cost_models(self, pipeline: str | None = None) -> list[CostModelRecord]:
        with self._db.session() as session:
            query = select(CostModel).order_by(CostModel.pipeline, CostModel.version)
            if pipeline is not None:
                query = query.where(CostModel.pipeline == pipeline)
            return [_cost_model_record(row) for row in session.scalars(query)]

    def champion_model(self, pipeline: str) -> CostModelRecord | None:
        with self._db.session() as session:
            row = session.scalars(
                select(CostModel).where(CostModel.pipeline == pipeline, CostModel.status == "champion")
            ).first()
            return None if row is None else _cost_model_record(row)

    def next_model_version(self, pipeline: str) -> int:
        with self._db.session() as session:
            latest = session.scalar(select(func.max(CostModel.version)).where(CostModel.pipeline == pipeline))
            return int(latest or 0) + 1

    def record_cost_model(
        self,
        pipeline: str,
        *,
        version: int,
        promote: bool,
        path: str,
        trained_from: datetime,
        trained_to: datetime,
        train_runs: int,
        test_runs: int,
        metrics: dict[str, Any],
        note: str | None,
    ) -> None:
        """Record a trained model; when promoted, the old champion is retired in the same transaction."""
        with self._db.session() as session:
            if promote:
                session.execute(
                    update(CostModel)
                    .where(CostModel.pipeline == pipeline, CostModel.status == "champion")
                    .values(status="retired")
                )
            session.add(
                CostModel(
                    pipeline=pipeline,
                    version=version,
                    status="champion" if promote else "rejected",
                    path=path,
                    created_at=utcnow(),
                    trained_from=trained_from,
                    trained_to=trained_to,
                    train_runs=train_runs,
                    test_runs=test_runs,
                    metrics=metrics,
                    note=note,
                )
            )

    def last_training_at(self) -> datetime | None:
        with self._db.session() as session:
            return session.scalar(select(func.max(CostModel.created_at)))

    # ---- estimates and what really happened ---------------------------------------------------

    def log_estimates(self, estimates: list[dict[str, Any]]) -> list[int]:
        """Keep estimates as given (pipeline, model_id, file_id, inputs, predicted); their ids."""
        now = utcnow()
        with self._db.session() as session:
            rows = [CostEstimate(at=now, **estimate) for estimate in estimates]
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def estimates(self, pipeline: str | None = None, with_actual: bool = False) -> list[EstimateRecord]:
        with self._db.session() as session:
            query = select(CostEstimate).order_by(CostEstimate.id)
            if pipeline is not None:
                query = query.where(CostEstimate.pipeline == pipeline)
            if with_actual:
                query = query.where(CostEstimate.run_id.is_not(None))
            return [_estimate_record(row) for row in session.scalars(query)]
