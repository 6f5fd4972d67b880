"""Defects of a recording that are unambiguous, found and (unless a study says
`quality.repairs: none`) repaired, each said in words for the quality report, the run's
provenance and its notices:

- an Axivity `.cwa` whose header is damaged cannot be read (fatal, with what is wrong);
- a GENEActiv `.bin` that ends mid-page (an incomplete copy): its complete pages are read;
- a `.cwa` that ends mid-block (an incomplete copy): the reader leaves the partial block out;
- a `.cwa` block whose checksum fails: SKDH's reader fills its samples with 0 g, which no
  worn or resting device measures; those samples are left out (a gap), as GGIR's reader
  skips such blocks;
- samples at the end (or start) whose timestamps are before 1971 or before the recording's
  own start (a clock that reset): trimmed;
- a `.cwa` with no complete data block, or a recording whose every timestamp is before 1971,
  cannot be read (fatal, with what is wrong).

Nothing else is changed: the samples that remain are the reader's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biomarkerflow.plugins.skdh.headers import CWA_BLOCK_BYTES, CWA_HEADER_BYTES
from biomarkerflow.plugins.skdh.quality import INVALID_BEFORE_UNIX

CWA_SAMPLE_COUNT_OFFSET = 28  # uint16 in each data block's header


class Unrepairable(ValueError):
    """The file cannot be read at all, for a reason that is said in words."""


@dataclass(frozen=True)
class Defect:
    what: str  # what is wrong, with the number that matters
    repair: str  # what repairing it does

    def __str__(self) -> str:
        return f"{self.what}: {self.repair}"


GENEACTIV_PAGE_MARK = b"Recorded Data"
GENEACTIV_PAGE_LINES = 10  # the mark, 8 lines of page facts, the samples in hex
GENEACTIV_HEX_CHARACTERS = 3600  # 300 samples of 12 hex characters
GENEACTIV_TAIL_BYTES = 8192  # more than one page's bytes


@dataclass(frozen=True)
class FileCheck:
    defects: list[Defect]
    bad_blocks: list[int]  # .cwa data blocks whose checksum fails
    read_bytes: int | None = None  # read only this many bytes (a complete prefix), or all


def file_defects(path: Path) -> FileCheck:
    """What is wrong with the file itself, in words (Axivity .cwa and GENEActiv .bin; other
    formats: nothing to say). Raises Unrepairable when the header is damaged."""
    suffix = path.suffix.lower()
    if suffix == ".bin":
        return _geneactiv(path)
    if suffix != ".cwa":
        return FileCheck([], [])
    defects, bad = _axivity(path)
    return FileCheck(defects, bad)


def _geneactiv(path: Path) -> FileCheck:
    """A last page cut short: the pages before it are read."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        stream.seek(max(0, size - GENEACTIV_TAIL_BYTES))
        tail = stream.read()
    mark = tail.rfind(GENEACTIV_PAGE_MARK)
    if mark < 0 and size <= GENEACTIV_TAIL_BYTES:  # the whole file read, and no page in it
        raise Unrepairable(
            f"the file holds its header but no data page ({size:,} bytes, no '{GENEACTIV_PAGE_MARK.decode()}'): "
            "an incomplete copy, or a device that recorded nothing; copy the file again from the device, or "
            "leave it out (data.exclude)"
        )
    if mark < 0 or (size <= GENEACTIV_TAIL_BYTES and mark == tail.find(GENEACTIV_PAGE_MARK)):
        return FileCheck([], [])  # no page, or the only page: nothing to read around
    lines = tail[mark:].splitlines()
    complete = len(lines) >= GENEACTIV_PAGE_LINES and len(lines[GENEACTIV_PAGE_LINES - 1].strip()) >= (
        GENEACTIV_HEX_CHARACTERS
    )
    if complete:
        return FileCheck([], [])
    start = size - len(tail) + mark
    what = f"the file ends mid-page at byte {size:,} (incomplete copy?)"
    return FileCheck([Defect(what, "the last, incomplete page is left out")], [], read_bytes=start)


CWA_CHUNK_BLOCKS = 16_384  # 8 MiB of blocks at a time: memory stays flat for a week's file


def _cwa_blocks(path: Path) -> Iterator[np.ndarray]:
    """The file's whole data blocks, a chunk at a time, as rows of 512 bytes."""
    with open(path, "rb") as stream:
        stream.seek(CWA_HEADER_BYTES)
        while chunk := stream.read(CWA_CHUNK_BLOCKS * CWA_BLOCK_BYTES):
            whole = len(chunk) // CWA_BLOCK_BYTES
            yield np.frombuffer(chunk, dtype=np.uint8, count=whole * CWA_BLOCK_BYTES).reshape(whole, CWA_BLOCK_BYTES)


def _axivity(path: Path) -> tuple[list[Defect], list[int]]:
    size = path.stat().st_size
    with open(path, "rb") as stream:
        header = stream.read(CWA_HEADER_BYTES)
    if len(header) < CWA_HEADER_BYTES or header[:2] != b"MD":
        raise Unrepairable(
            f"the file's header (its first {CWA_HEADER_BYTES:,} bytes) is damaged: an Axivity .cwa file "
            f"starts with 'MD', this one with {header[:2]!r}; copy the file again from the device"
        )
    whole, partial = divmod(size - CWA_HEADER_BYTES, CWA_BLOCK_BYTES)
    if whole == 0:  # SKDH's reader would stop the whole worker process (a Fortran end-of-file error)
        raise Unrepairable(
            f"the file holds its header but no complete data block ({size:,} bytes; a block is "
            f"{CWA_BLOCK_BYTES} bytes after the {CWA_HEADER_BYTES:,}-byte header): an incomplete copy, or a "
            "device that recorded nothing; copy the file again from the device, or leave it out (data.exclude)"
        )
    found: list[Defect] = []
    if partial:
        what = f"the file ends mid-block at byte {size:,} (incomplete copy?)"
        found.append(Defect(what, f"the last {partial} bytes, part of block {whole + 1}, are left out"))
    bad: list[int] = []
    first = 0
    for blocks in _cwa_blocks(path):  # a block's 16-bit words add up to 0 when it is whole
        words = blocks.view("<u2")
        bad += (first + np.flatnonzero(words.sum(axis=1, dtype=np.uint64) & 0xFFFF)).tolist()
        first += len(blocks)
    for index in bad:
        found.append(Defect(f"block {index + 1} of {whole:,} is corrupt (checksum)", "its samples are left out"))
    return found, bad


def cwa_block_samples(path: Path) -> np.ndarray:
    """The sample count each whole data block of a .cwa file declares."""
    offset = CWA_SAMPLE_COUNT_OFFSET
    counts = [
        blocks[:, offset].astype(np.int64) | (blocks[:, offset + 1].astype(np.int64) << 8)
        for blocks in _cwa_blocks(path)
    ]
    return np.concatenate(counts) if counts else np.empty(0, np.int64)


def drop_zero_filled(data: dict[str, Any], path: Path, bad_blocks: list[int]) -> dict[str, Any]:
    """The samples SKDH filled with 0 g for corrupt blocks, left out (each block's samples
    located from the good blocks' sample counts; a range that is not all zeros is kept)."""
    if not bad_blocks:
        return data
    counts = cwa_block_samples(path)
    for bad in bad_blocks:  # a corrupt block's own count cannot be trusted: its neighbour's
        counts[bad] = counts[bad - 1] if bad > 0 else counts[min(bad + 1, len(counts) - 1)]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    accel = np.asarray(data["accel"])
    keep = np.ones(len(accel), bool)
    for bad in bad_blocks:
        low, high = int(starts[bad]), int(starts[bad] + counts[bad])
        if high <= len(accel) and not np.any(accel[low:high]):
            keep[low:high] = False
    return _rows(data, keep) if not keep.all() else data


def trim_invalid_time(data: dict[str, Any]) -> tuple[dict[str, Any], list[Defect]]:
    """Samples at the end (or start) whose timestamps are before 1971, or at the end before
    the recording's first valid time (a clock that reset), trimmed; what was done, in words."""
    time = np.asarray(data["time"], dtype=np.float64)
    invalid = time < INVALID_BEFORE_UNIX
    if invalid.all():  # nothing to trim to: no sample can be placed in time
        raise Unrepairable(
            f"all {len(time):,} samples have timestamps before 1971: the device's clock was never set, or the "
            "file holds no recording; leave it out of the study (data.exclude)"
        )
    lead = int(np.argmax(~invalid))
    start = time[lead]
    bad_tail = invalid | (time < start)
    bad_tail[:lead] = True
    tail = int(np.flatnonzero(~bad_tail)[-1]) + 1  # after the last good sample, only bad ones
    done: list[Defect] = []
    if lead:
        done.append(Defect(f"the first {lead:,} samples have timestamps before 1971 (a clock not yet set)", "trimmed"))
    if tail < len(time):
        when = "before 1971" if float(time[tail]) < INVALID_BEFORE_UNIX else "before the recording's start"
        what = f"the last {len(time) - tail:,} samples have timestamps {when} (a clock that reset)"
        done.append(Defect(what, "trimmed"))
    if not done:
        return data, []
    keep = np.zeros(len(time), bool)
    keep[lead:tail] = True
    return _rows(data, keep), done


def _rows(data: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """Every per-sample array of the reader's output at the kept samples; the rest as is."""
    samples = len(keep)
    return {
        key: value[keep] if isinstance(value, np.ndarray) and value.ndim >= 1 and len(value) == samples else value
        for key, value in data.items()
    }
