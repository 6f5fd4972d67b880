"""What a device file's header says about the recording, read without SKDH.

Cost estimates need a recording's sample rate and length before the file is processed;
SKDH's run time grows with the number of samples, which a file's size alone does not
tell (the same bytes hold 7 days at 10 Hz or 3.5 days at 20 Hz). GENEActiv `.bin` and
Axivity `.cwa` files say both in their first few kilobytes, so `HEAD_BYTES` of the
file is all that is read. Other formats give None: the estimate then uses size alone.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

HEAD_BYTES = 4096  # a GENEActiv header ends near byte 1,400; an Axivity one at 1,024 + one block

GENEACTIV_SAMPLES_PER_PAGE = 300
CWA_HEADER_BYTES = 1024
CWA_BLOCK_BYTES = 512


@dataclass(frozen=True)
class RecordingFacts:
    sample_rate_hz: float
    samples: int

    @property
    def recording_seconds(self) -> float:
        return self.samples / self.sample_rate_hz


def recording_facts(head: bytes, size: int, suffix: str) -> RecordingFacts | None:
    """Sample rate and sample count from the start of a file of `size` bytes, or None if
    the format is not one whose header says them, or the header is not as expected."""
    reader = _READERS.get(suffix.lower().lstrip("."))
    return reader(head, size) if reader else None


def says_recording_facts(suffix: str) -> bool:
    """Whether files of this type have a header `recording_facts` can read (worth reading)."""
    return suffix.lower().lstrip(".") in _READERS


def _geneactiv(head: bytes, size: int) -> RecordingFacts | None:
    text = head.decode("latin-1")
    rate = re.search(r"^Measurement Frequency:\s*([0-9.]+)", text, re.MULTILINE)
    pages = re.search(r"^Number of Pages:\s*([0-9]+)", text, re.MULTILINE)
    if not rate or not pages or float(rate.group(1)) <= 0:
        return None
    return RecordingFacts(float(rate.group(1)), int(pages.group(1)) * GENEACTIV_SAMPLES_PER_PAGE)


def _axivity(head: bytes, size: int) -> RecordingFacts | None:
    block = head[CWA_HEADER_BYTES : CWA_HEADER_BYTES + CWA_BLOCK_BYTES]
    if head[:2] != b"MD" or len(block) < 30 or block[:2] != b"AX":
        return None
    rate_code = block[24]
    (samples_per_block,) = struct.unpack_from("<H", block, 28)
    # OpenMovement's cwa format: rate = 3200 / 2^(15 - low nibble of the rate code)
    rate = 3200.0 / (1 << (15 - (rate_code & 0x0F)))
    blocks = (size - CWA_HEADER_BYTES) // CWA_BLOCK_BYTES
    return RecordingFacts(rate, blocks * samples_per_block)


_READERS = {"bin": _geneactiv, "cwa": _axivity}
