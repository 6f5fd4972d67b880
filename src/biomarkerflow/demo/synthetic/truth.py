"""The per-minute ground truth a recording was built from, and its per-night and per-day views."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from biomarkerflow.demo.synthetic.atomic import atomic_open


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Per-minute truth of a synthetic recording.

    ``minutes`` has one row per whole minute of the recording with the columns ``time``
    (datetime64, minute start, naive local), ``worn`` (bool), ``asleep`` (bool),
    ``intensity`` (one of :data:`INTENSITIES`; awake minutes in bed are ``sedentary``)
    and ``walking`` (bool, walking or running).
    """

    minutes: pd.DataFrame
    subject: str = ""

    def write_csv(self, path: Path) -> None:
        """Write ``minutes`` as CSV (ISO times), atomically."""
        text = self.minutes.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S", lineterminator="\n")
        with atomic_open(Path(path)) as fh:
            fh.write(text.encode("utf-8"))

    @classmethod
    def read_csv(cls, path: Path, subject: str = "") -> GroundTruth:
        """Read a truth CSV written by :meth:`write_csv`."""
        df = pd.read_csv(path)
        df["time"] = pd.to_datetime(df["time"]).astype("datetime64[ns]")
        for col in ("worn", "asleep", "walking"):
            df[col] = df[col].astype(bool)
        df["intensity"] = df["intensity"].astype(str)
        return cls(minutes=df, subject=subject)

    def nights(self) -> pd.DataFrame:
        """One row per night with any sleep.

        A night is the noon-to-noon window it falls in, named by the date of its start
        (the evening), as SKDH's ``Sleep(day_window=(12, 24))`` names its days. Columns:
        ``night`` (date), ``onset`` and ``wake`` (first asleep minute, end of the last),
        ``period_minutes`` (wake - onset) and ``sleep_minutes`` (asleep minutes; brief
        awakenings excluded).
        """
        m = self.minutes
        asleep = m[m["asleep"]]
        rows = []
        night_of = (asleep["time"] - pd.Timedelta(hours=12)).dt.date
        for night, grp in asleep.groupby(night_of, sort=True):
            onset = grp["time"].iloc[0]
            wake = grp["time"].iloc[-1] + pd.Timedelta(minutes=1)
            rows.append(
                {
                    "night": night,
                    "onset": onset,
                    "wake": wake,
                    "period_minutes": int((wake - onset) / pd.Timedelta(minutes=1)),
                    "sleep_minutes": len(grp),
                }
            )
        cols = ["night", "onset", "wake", "period_minutes", "sleep_minutes"]
        return pd.DataFrame(rows, columns=cols)

    def summary(self) -> pd.DataFrame:
        """Per calendar day: ``date``, ``recorded_hours``, ``wear_hours``, ``sleep_minutes``
        and ``mvpa_minutes``.

        ``wear_hours`` and ``mvpa_minutes`` (moderate + vigorous) count the minutes of that
        calendar day. ``sleep_minutes`` is the night that *starts* that day (asleep minutes
        in the noon-to-noon window beginning at noon of that date), as SKDH reports sleep;
        a night that started before the recording's first day gets its own row.
        """
        m = self.minutes
        day = m["time"].dt.date
        night = (m["time"] - pd.Timedelta(hours=12)).dt.date
        mvpa = m["intensity"].isin(["moderate", "vigorous"])
        per_day = pd.DataFrame(
            {
                "recorded_hours": m.groupby(day).size() / 60.0,
                "wear_hours": m["worn"].groupby(day).sum() / 60.0,
                "mvpa_minutes": mvpa.groupby(day).sum(),
            }
        )
        sleep = m["asleep"].groupby(night).sum()
        sleep = sleep[(sleep > 0) | sleep.index.isin(per_day.index)]
        out = per_day.join(sleep.rename("sleep_minutes"), how="outer")
        out = out.fillna(0.0)
        out.index.name = "date"
        out = out.reset_index()
        out["sleep_minutes"] = out["sleep_minutes"].astype(int)
        out["mvpa_minutes"] = out["mvpa_minutes"].astype(int)
        return out[["date", "recorded_hours", "wear_hours", "sleep_minutes", "mvpa_minutes"]]
