"""Notifications about the cost models: always logged, and POSTed as JSON to a webhook if set.

A webhook that is down never stops training: the failure is logged and returned.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("biomarkerflow.models")

TIMEOUT_SECONDS = 10.0


def notify(event: str, message: str, details: dict[str, Any], webhook_url: str | None) -> str | None:
    """Log the event and POST it to `webhook_url`; returns why delivery failed, or None."""
    log.log(logging.INFO if event == "model-promoted" else logging.WARNING, "%s: %s", event, message)
    if not webhook_url:
        return None
    body = json.dumps({"event": event, "message": message, **details}, default=str).encode()
    request = urllib.request.Request(
        webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        problem = f"webhook {webhook_url} did not take the notification: {exc}"
        log.error(problem)
        return problem
    return None
