"""The GENEActiv ``.bin`` format, both ways: the device's calibration, the writer and a reader.

File format (modelled on a real GENEActiv sample file): a text header of 59 lines
(sections "Device Identity" ... "Memory Status"), then one page per 300 samples. A page is
9 lines of metadata ("Recorded Data", serial, "Sequence Number", "Page Time" = time of the
page's first sample, "Unassigned", per-page "Temperature", "Battery voltage", "Device
Status", "Measurement Frequency") and one line of 3600 upper-case hex characters: per
sample 12 characters = x, y, z as signed 12-bit counts, then 10 bits of light, 1 button
bit and 1 reserved bit. Acceleration in g is ``(count * 100 - offset) / gain`` with the
per-axis gain and offset of the header's "Calibration Data"; light in lux is
``floor(light10 * Lux / Volts)``. Lines end with LF, as in the real sample.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from biomarkerflow.demo.synthetic.schedule import Schedule
from biomarkerflow.demo.synthetic.spec import SAMPLES_PER_PAGE, RecordingSpec

FloatArray = npt.NDArray[np.float64]

_HEADER_LINES = 59
_PAGE_LINES = 10
_VOLTS = 42
_LUX = 886

_HEX_DIGITS = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
# the three upper-case hex digits of every 12-bit value
_HEX3 = _HEX_DIGITS[np.stack([(np.arange(4096) >> sh) & 0xF for sh in (8, 4, 0)], axis=1)].astype(np.uint8)
_HEX_VALUES = np.full(256, 255, dtype=np.uint8)
_HEX_VALUES[np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)] = np.arange(16)
_HEX_VALUES[np.frombuffer(b"abcdef", dtype=np.uint8)] = np.arange(10, 16)


@dataclass(frozen=True, eq=False)
class Device:
    """The recording device: per-axis calibration (gain, offset) and serial number."""

    gain: FloatArray
    offset: FloatArray
    serial: str

    @classmethod
    def of(cls, spec: RecordingSpec) -> Device:
        """The device of ``spec``'s subject: its own random stream (``[seed, 2]``), serial from the subject."""
        dev = np.random.default_rng([spec.seed, 2])
        gain = (25000 + dev.integers(0, 700, size=3)).astype(np.float64)
        offset = dev.integers(-1200, 601, size=3).astype(np.float64)
        serial = f"{zlib.crc32(spec.subject.encode()) % 1_000_000:06d}"
        return cls(gain, offset, serial)


@dataclass(frozen=True, eq=False)
class GeneActivData:
    """A decoded GENEActiv ``.bin`` file (see :func:`read_geneactiv_bin`)."""

    header: dict[str, str]
    fs: float
    time: FloatArray
    accel: FloatArray
    light: FloatArray
    temperature: FloatArray
    page_time: FloatArray
    page_temperature: FloatArray


def file_header(spec: RecordingSpec, device: Device) -> bytes:
    """The 59 header lines (fixed texts where a real device writes its own)."""
    start = spec.start
    end = start + timedelta(seconds=spec.n_samples / spec.fs)
    fs_txt = f"{spec.fs:g}"
    lines = [
        "Device Identity",
        f"Device Unique Serial Code:{device.serial}",
        "Device Type:GENEActiv",
        "Device Model:1.1",
        "Device Firmware Version:Ver4.08a date14Jul14",
        f"Calibration Date:{_fmt_time(datetime.combine(start.date(), time(13, 49, 24)) - timedelta(days=400))}",
        "",
        "Device Capabilities",
        "Accelerometer Range:-8 to 8",
        "Accelerometer Resolution:0.0039",
        "Accelerometer Units:g",
        "Light Meter Range:0 to 5000",
        "Light Meter Resolution:5",
        "Light Meter Units:lux",
        "Temperature Sensor Range:0 to 70",
        "Temperature Sensor Resolution:0.1",
        "Temperature Sensor Units:deg. C",
        "",
        "Configuration Info",
        f"Measurement Frequency:{fs_txt} Hz",
        f"Measurement Period:{math.ceil(spec.days * 24)} Hours",
        f"Start Time:{_fmt_time(start)}",
        "Time Zone:GMT +00:00",
        "",
        "Trial Info",
        "Study Centre:biomarkerflow synthetic",
        "Study Code:SYNTH",
        "Investigator ID:",
        "Exercise Type:",
        "Config Operator ID:",
        f"Config Time:{_fmt_time(start - timedelta(minutes=17, seconds=22.312))}",
        f"Config Notes:synthetic recording, seed {spec.seed}",
        "Extract Operator ID:",
        f"Extract Time:{_fmt_time(end + timedelta(days=1, minutes=8, seconds=28.461))}",
        "Extract Notes:(device clock drift 0.000s)",
        "",
        "Subject Info",
        f"Device Location Code:{spec.location}",
        f"Subject Code:{spec.subject}",
        "Date of Birth:1900-1-1",
        "Sex:",
        "Height:",
        "Weight:",
        "Handedness Code:",
        "Subject Notes:",
        "",
        "Calibration Data",
        f"x gain:{int(device.gain[0])}",
        f"x offset:{int(device.offset[0])}",
        f"y gain:{int(device.gain[1])}",
        f"y offset:{int(device.offset[1])}",
        f"z gain:{int(device.gain[2])}",
        f"z offset:{int(device.offset[2])}",
        f"Volts:{_VOLTS}",
        f"Lux:{_LUX}",
        "",
        "Memory Status",
        f"Number of Pages:{spec.n_pages}",
        "",
    ]
    assert len(lines) == _HEADER_LINES
    return ("\n".join(lines) + "\n").encode("ascii")


class PageWriter:
    """Quantise, hex-encode and write whole pages as samples arrive."""

    # pages hex-encoded and written at once (360,000 samples)
    _BATCH_PAGES = 1200

    def __init__(self, fh: IO[bytes], spec: RecordingSpec, schedule: Schedule, device: Device) -> None:
        self.fh = fh
        self.spec = spec
        self.schedule = schedule
        self.device = device
        self.pending: list[FloatArray] = []
        self.n_pending = 0
        self.page = 0  # next page to write
        page_ms = round(SAMPLES_PER_PAGE * 1000 / spec.fs)
        t0 = np.datetime64(spec.start, "ms")
        stamps = t0 + np.arange(spec.n_pages, dtype=np.int64) * np.timedelta64(page_ms, "ms")
        txt = np.datetime_as_string(stamps, unit="ms")
        self.stamps = [s.replace("T", " ").replace(".", ":") for s in txt.tolist()]
        # battery discharges slowly over the recording
        self.battery = 4.18 - 0.025 * np.arange(spec.n_pages) * SAMPLES_PER_PAGE / spec.fs / 86400
        self.fs_txt = f"{spec.fs:.1f}"

    def add(self, accel: FloatArray) -> None:
        """Queue samples (in g); full batches of pages are written as they fill."""
        self.pending.append(accel)
        self.n_pending += accel.shape[0]
        if self.n_pending >= self._BATCH_PAGES * SAMPLES_PER_PAGE:
            self._flush(final=False)

    def close(self) -> None:
        """Write what is queued; the file must then hold exactly the spec's pages."""
        self._flush(final=True)
        if self.page != self.spec.n_pages:
            raise RuntimeError(f"wrote {self.page} pages, expected {self.spec.n_pages}")

    def _flush(self, *, final: bool) -> None:
        if not self.pending:
            return
        acc = np.concatenate(self.pending, axis=0) if len(self.pending) > 1 else self.pending[0]
        n_pages = acc.shape[0] // SAMPLES_PER_PAGE
        if final and acc.shape[0] % SAMPLES_PER_PAGE:
            raise RuntimeError("sample count is not a whole number of pages")
        n_take = n_pages * SAMPLES_PER_PAGE
        rest = acc[n_take:]
        self.pending = [rest] if rest.shape[0] else []
        self.n_pending = rest.shape[0]
        if n_pages:
            self._write(acc[:n_take])

    def _write(self, acc: FloatArray) -> None:
        rows = self._hex_rows(acc)
        chunks: list[bytes] = []
        for j in range(rows.shape[0]):
            chunks.append(self._page_metadata(self.page + j))
            chunks.append(rows[j].tobytes())
        self.fh.write(b"".join(chunks))
        self.page += rows.shape[0]

    def _hex_rows(self, acc: FloatArray) -> npt.NDArray[np.uint8]:
        """One data line per page (3600 hex characters and LF) for whole pages of samples."""
        device = self.device
        s0 = self.page * SAMPLES_PER_PAGE
        n = acc.shape[0]
        counts = np.rint((acc * device.gain + device.offset) / 100.0)
        counts = np.clip(counts, -2048, 2047).astype(np.int32) & 0xFFF
        light10 = np.clip(np.rint(self.schedule.sample_light(s0, s0 + n) * _VOLTS / _LUX), 0, 1023)
        values = np.empty((n, 4), dtype=np.int32)
        values[:, :3] = counts
        values[:, 3] = light10.astype(np.int32) << 2  # button and reserved bits are 0
        n_pages = n // SAMPLES_PER_PAGE
        rows = np.empty((n_pages, 3601), dtype=np.uint8)
        rows[:, :3600] = _HEX3[values].reshape(n_pages, 3600)
        rows[:, 3600] = ord("\n")
        return rows

    def _page_metadata(self, k: int) -> bytes:
        """The 9 lines before page `k`'s data line."""
        return (
            "Recorded Data\n"
            f"Device Unique Serial Code:{self.device.serial}\n"
            f"Sequence Number:{k}\n"
            f"Page Time:{self.stamps[k]}\n"
            "Unassigned:\n"
            f"Temperature:{self.schedule.page_temperature[k]:.1f}\n"
            f"Battery voltage:{self.battery[k]:.4f}\n"
            "Device Status:Recording\n"
            f"Measurement Frequency:{self.fs_txt}\n"
        ).encode("ascii")


def read_geneactiv_bin(path: Path) -> GeneActivData:
    """Decode a GENEActiv ``.bin`` file with numpy (the same arithmetic as SKDH's reader).

    Time is in seconds since 1970 of the naive local page times; each page's samples are
    ``page_time + i / fs``. Acceleration is ``(count * 100 - offset) / gain``, light is
    ``floor(light10 * Lux / Volts)``, temperature is the page's value.
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    header: dict[str, str] = {}
    for raw in lines[:_HEADER_LINES]:
        key, sep, value = raw.decode("latin-1").partition(":")
        if sep:
            header[key.strip()] = value.replace("\x00", "").strip()
    body = lines[_HEADER_LINES:]
    n_pages = len(body) // _PAGE_LINES
    if n_pages == 0:
        raise ValueError(f"{path}: no data pages")
    pages = [body[i * _PAGE_LINES : (i + 1) * _PAGE_LINES] for i in range(n_pages)]
    fs = float(pages[0][8].split(b":", 1)[1])
    accel, light = _decode_samples(pages, header)

    stamps = np.array([p[3].split(b":", 1)[1].decode() for p in pages])
    page_time = _parse_page_times(stamps)
    page_temp = np.array([float(p[5].split(b":", 1)[1]) for p in pages])
    # pages in the order of their sequence numbers, whatever their order in the file
    seq = np.array([int(p[2].split(b":", 1)[1]) for p in pages])
    order = np.argsort(seq, kind="stable")
    offsets = np.arange(SAMPLES_PER_PAGE) / fs
    time_s = (page_time[order][:, None] + offsets[None, :]).ravel()
    per_page = order[:, None] * SAMPLES_PER_PAGE + np.arange(SAMPLES_PER_PAGE)[None, :]
    idx = per_page.ravel()
    return GeneActivData(
        header=header,
        fs=fs,
        time=time_s,
        accel=accel[idx],
        light=light[idx],
        temperature=np.repeat(page_temp[order], SAMPLES_PER_PAGE),
        page_time=page_time[order],
        page_temperature=page_temp[order],
    )


def _decode_samples(pages: list[list[bytes]], header: dict[str, str]) -> tuple[FloatArray, FloatArray]:
    """Acceleration (g) and light (lux) of every sample, in file order."""
    gain = np.array([float(header[f"{ax} gain"]) for ax in "xyz"])
    offset = np.array([float(header[f"{ax} offset"]) for ax in "xyz"])
    volts, lux = float(header["Volts"]), float(header["Lux"])
    hexdata = np.frombuffer(b"".join(p[9][:3600] for p in pages), dtype=np.uint8)
    nib = _HEX_VALUES[hexdata].reshape(-1, 4, 3).astype(np.int32)
    values = (nib[..., 0] << 8) | (nib[..., 1] << 4) | nib[..., 2]
    counts = values[:, :3].astype(np.float64)
    counts[counts > 2047] -= 4096
    accel = (counts * 100.0 - offset) / gain
    light = np.floor((values[:, 3] >> 2).astype(np.float64) * (lux / volts))
    return accel, light


def _fmt_time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S:") + f"{dt.microsecond // 1000:03d}"


def _parse_page_times(stamps: npt.NDArray[np.str_]) -> FloatArray:
    """'YYYY-MM-DD HH:MM:SS:mmm' -> seconds since 1970 (naive)."""
    iso = [s[:19].replace(" ", "T") + "." + s[20:23] for s in stamps.tolist()]
    ms = np.array(iso, dtype="datetime64[ms]").astype(np.int64)
    return ms / 1000.0
