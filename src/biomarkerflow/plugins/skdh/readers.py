"""Readers for device formats SKDH cannot read, built as SKDH readers are (a `BaseProcess`
whose `predict(file=..., tz_name=...)` gives `time`, `accel`, `fs`), so a pipeline runs on
them exactly as on SKDH's own.

ReadGt3x: ActiGraph `.gt3x` (SKDH removed its reader in 2022) through ActiGraph's own
`pygt3x`: acceleration in g, calibrated as pygt3x calibrates it, samples of idle-sleep mode
as pygt3x fills them (marked in `idle_sleep`, which the quality report counts); the device's
clock turned into unix time by SKDH's own `handle_naive_timestamps`, as SKDH's readers do
(UTC with the subject's `tz_name`, else the device's local time).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skdh.base import BaseProcess, handle_process_returns
from skdh.io.base import check_input_file, handle_naive_timestamps


class ReadGt3x(BaseProcess):
    """Read an ActiGraph .gt3x file (through pygt3x)."""

    def __init__(self, ext_error: str = "warn") -> None:
        super().__init__(ext_error=ext_error)
        if ext_error.lower() not in ("warn", "raise", "skip"):
            raise ValueError("`ext_error` must be one of 'raise', 'warn', 'skip'.")
        self.ext_error = ext_error.lower()

    @handle_process_returns(results_to_kwargs=True)
    @check_input_file(".gt3x")
    def predict(self, *, file: Any, tz_name: str | None = None, **kwargs: Any) -> dict[str, Any]:
        from pygt3x.reader import FileReader

        super().predict(expect_days=False, expect_wear=False, file=file, tz_name=tz_name, **kwargs)
        with FileReader(str(file)) as reader:
            frame = reader.to_pandas()
            fs = float(reader.info.sample_rate)
        time = handle_naive_timestamps(frame.index.to_numpy(dtype=np.float64), is_local=True, tz_name=tz_name)
        accel = frame[["X", "Y", "Z"]].to_numpy(dtype=np.float64)
        # Samples the device did not measure (idle-sleep mode: pygt3x repeats the last one),
        # for the quality report; the steps ignore a keyword they do not know.
        idle = frame["IdleSleepMode"].to_numpy(dtype=bool) if "IdleSleepMode" in frame else None
        return {"time": time, "accel": accel, "fs": fs, **({"idle_sleep": idle} if idle is not None else {})}


READERS: dict[str, type] = {"ReadGt3x": ReadGt3x}
