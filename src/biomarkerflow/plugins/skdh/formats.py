"""Which device format a file is, from its first bytes, without SKDH.

SKDH's readers trust the file they are given: `ReadBin` on an Axivity `.cwa` file
crashes the worker process (SIGSEGV) instead of raising. Checking the few bytes every
format starts with ("magic") costs one small read and turns that crash into a clear
message, both in `validate` (on a sample of the study's files) and in each job before
the reader runs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAGIC_BYTES", "FileFormat", "detect_format", "format_without_reader", "reader_mismatch"]

MAGIC_BYTES = 64  # enough for every signature below


@dataclass(frozen=True)
class FileFormat:
    name: str  # what a scientist calls it, for messages
    reader: str | None  # the SKDH reader for it; None when SKDH has none
    hint: str = ""  # what to do with such files when SKDH cannot read them


_GENEACTIV = FileFormat("GENEActiv .bin", "ReadBin")
_AXIVITY = FileFormat("Axivity .cwa", "ReadCwa")
_HDF5 = FileFormat("HDF5 (.h5)", "ReadApdmH5")
_AVRO = FileFormat("Avro", "ReadEmpaticaAvro")
_ZIP = FileFormat(
    "ZIP archive (e.g. ActiGraph .gt3x or NumPy .npz)",
    None,
    "an ActiGraph .gt3x file needs reader ReadGt3x (by extension with reader: auto); "
    "a NumPy .npz file needs reader ReadNumpyFile",
)

# File extensions of device formats no reader opens, so `reader: auto` can say why (none now:
# ActiGraph .gt3x, which SKDH dropped in 2022, has ReadGt3x).
_WITHOUT_READER: dict[str, FileFormat] = {}
_TEXT = FileFormat("text (e.g. CSV)", "ReadCSV")

# Readers whose files have no signature of their own are not checked (ReadCSV reads any text).
_SIGNATURES: tuple[tuple[bytes, FileFormat], ...] = (
    (b"Device Identity", _GENEACTIV),
    (b"MD", _AXIVITY),
    (b"\x89HDF\r\n\x1a\n", _HDF5),
    (b"Obj\x01", _AVRO),
    (b"PK\x03\x04", _ZIP),
)

# The reader -> the formats it can open (by signature).
_READER_FORMATS: dict[str, tuple[FileFormat, ...]] = {
    "ReadBin": (_GENEACTIV,),
    "ReadCwa": (_AXIVITY,),
    "ReadApdmH5": (_HDF5,),
    "ReadEmpaticaAvro": (_AVRO,),
    "ReadNumpyFile": (_ZIP,),
}


def detect_format(head: bytes) -> FileFormat | None:
    """The format a file's first bytes announce, None when none is recognised."""
    for magic, found in _SIGNATURES:
        if head.startswith(magic):
            return found
    if head and _looks_like_text(head):
        return _TEXT
    return None


def format_without_reader(suffix: str) -> FileFormat | None:
    """The device format a file extension (".gt3x") stands for when SKDH cannot read it, else None."""
    return _WITHOUT_READER.get(suffix.lower())


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def reader_mismatch(reader: str, head: bytes, name: str = "this file") -> str | None:
    """Why `reader` cannot read a file starting with `head`, or None if it may.

    Readers without a file signature (ReadCSV, custom ones) are never refused here,
    and neither is an empty or unrecognised start: SKDH then gives its own answer.
    `name` is how the message names the file (e.g. its path as the study config writes it).
    """
    expected = _READER_FORMATS.get(reader)
    if expected is None:
        return None
    found = detect_format(head)
    if found is None or found in expected:
        return None
    wanted = " or ".join(f.name for f in expected)
    message = f"{reader} reads {wanted} files, but {name} is {found.name}"
    if found.reader is not None:
        return f"{message}: use reader {found.reader}"
    return f"{message}: {found.hint}" if found.hint else message
