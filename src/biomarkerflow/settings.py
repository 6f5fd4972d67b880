"""The home's settings file, `<home>/settings.yaml`: prices, cost models, notifications.

Written with every default (and comments) the first time the home is used, so users
edit a file that already shows what can be set. A problem in it is reported with
file, line and field, like a study config.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from biomarkerflow.config.loader import load_yaml_model
from biomarkerflow.cost.prices import BUILT_IN_TABLES, DEFAULT_TABLE, Capacity, PriceTable
from biomarkerflow.engine.leases import LEASE_SECONDS

SETTINGS_FILE = "settings.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PricesSettings(_Strict):
    in_force: str = Field(default=DEFAULT_TABLE, description="The price table runs are charged under.")
    capacity: Capacity = Field(default="on-demand", description="on-demand or spot (spot_discount applies).")
    tables: dict[str, PriceTable] = Field(default_factory=dict, description="Your own tables, by name.")

    @model_validator(mode="after")
    def _table_exists(self) -> PricesSettings:
        if self.in_force not in self.all_tables():
            known = ", ".join(sorted(self.all_tables()))
            raise ValueError(f"in_force names no price table: '{self.in_force}'; known tables: {known}")
        return self

    def all_tables(self) -> dict[str, PriceTable]:
        """Built-in tables, overridden or extended by the user's."""
        return {**BUILT_IN_TABLES, **self.tables}

    def table(self) -> PriceTable:
        return self.all_tables()[self.in_force]


class ModelsSettings(_Strict):
    retrain_every_hours: float | None = Field(
        default=24.0, gt=0, description="How often `watch` retrains the cost models (empty: never)."
    )


class NotificationSettings(_Strict):
    webhook_url: str | None = Field(default=None, description="POSTed a JSON message on model events.")


class ProcessingSettings(_Strict):
    lease_seconds: float = Field(
        default=LEASE_SECONDS,
        ge=5,
        description="A file claimed by a command on another machine that stops heartbeating for this long "
        "is taken back and retried (a command killed on this machine gives its files back at once).",
    )
    gc_every_hours: float | None = Field(
        default=6.0, gt=0, description="How often `watch` runs `biomarkerflow gc` (empty: never)."
    )


class Settings(_Strict):
    prices: PricesSettings = Field(default_factory=PricesSettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)


DEFAULT_TEXT = f"""\
# biomarkerflow settings for this home. Delete a line to get its default back.

prices:
  # The table every run is charged under, and the capacity type it assumes.
  in_force: {DEFAULT_TABLE}
  capacity: on-demand          # or: spot (the table's spot_discount applies)
  # Built in: {DEFAULT_TABLE} (AWS Fargate Linux/x86 us-east-1, $0.04048 per vCPU-hour,
  # $0.004445 per GB-hour, per second with a 60 s minimum, prices of 2026-11-22) and
  # on-premises (all zero until you set it). Add or override tables here, e.g.:
  tables: {{}}
  # tables:
  #   on-premises:
  #     description: our cluster, hardware + power + staff over 4 years
  #     per_vcpu_hour: 0.012       # your cost per core-hour
  #   aws-fargate-eu-west-1:      # example figures: check the price page
  #     per_vcpu_hour: 0.04456
  #     per_gb_hour: 0.004865
  #     minimum_seconds: 60
  #     spot_discount: 0.7
  #     as_of: "2026-11-22"

processing:
  # A file claimed by a command on another machine that stops heartbeating this long is
  # taken back and retried; a command killed on this machine gives its files back at once.
  lease_seconds: {LEASE_SECONDS:g}
  gc_every_hours: 6            # `watch` removes what killed work left behind this often (biomarkerflow gc)

models:
  retrain_every_hours: 24      # `watch` retrains the cost models this often

notifications:
  webhook_url:                 # e.g. https://hooks.example.org/biomarkerflow
"""


def settings_path(home: Path) -> Path:
    return home / SETTINGS_FILE


def load_settings(home: Path) -> Settings:
    """The home's settings; the file is created with its defaults when missing."""
    path = settings_path(home)
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(DEFAULT_TEXT)
    return load_yaml_model(path, Settings)
