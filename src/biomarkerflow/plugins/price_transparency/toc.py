"""Tables of contents: which in-network files a publisher lists, for which plans.

Read during discovery, streamed like any machine-readable file (a table of contents can
be tens of gigabytes): each `reporting_structure` entry at a time.
"""

from __future__ import annotations

import logging

import msgspec

from biomarkerflow.plugins.price_transparency.flatten import listed_files, plan_ids
from biomarkerflow.plugins.price_transparency.records import DECODERS, ReportingStructure
from biomarkerflow.plugins.price_transparency.scan import Element, JsonStructureError, scan
from biomarkerflow.storage import store

log = logging.getLogger(__name__)
STREAMED = frozenset({"reporting_structure"})


def listed_in_network_files(url: str, plans: frozenset[str]) -> list[str]:
    """The in-network file URLs the table of contents at `url` lists (for `plans`, if any),
    each once, in the order listed. A table that cannot be read lists nothing here: its own
    job then fails and says where it breaks."""
    from biomarkerflow.plugins.price_transparency.extract import documents

    found: dict[str, None] = {}
    decoder = DECODERS["reporting_structure"]
    try:
        with store.local_copy(url) as path:
            for _, stream in documents(path):
                with stream:
                    for part in scan(stream, STREAMED):
                        if not isinstance(part, Element):
                            continue
                        entry: ReportingStructure = decoder.decode(part.raw)
                        if plans and not plan_ids(entry) & plans:
                            continue
                        found.update((u, None) for kind, u, _ in listed_files(entry) if kind == "in-network")
    except (JsonStructureError, msgspec.DecodeError, OSError, EOFError) as exc:
        log.warning("table of contents %s cannot be read: %s", url, exc)
        return []
    return list(found)
