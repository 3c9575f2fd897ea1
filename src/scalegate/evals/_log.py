"""Evaluation logs: write them where the context says, and hash their exact bytes.

Every result carries ``log_digest``, the SHA-256 of the full log an evaluation produced
(Inspect's own log file, or a JSON record for probes and for failures that happened
before a harness wrote anything), so an auditor holding the log can check it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalegate.evals._result import EvalContext

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data``, lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, lowercase hex, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_stem(text: str) -> str:
    """``text`` made safe as part of a file name (evaluation ids may contain ``/`` or ``:``)."""
    return _UNSAFE.sub("_", text).strip("._") or "evaluation"


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a JSON log record (sorted keys; non-JSON values as strings)."""
    return (json.dumps(record, sort_keys=True, indent=2, default=str) + "\n").encode()


def write_record(context: EvalContext, evaluation_id: str, record: Mapping[str, Any]) -> str:
    """Write ``record`` as a JSON log under ``context.log_dir`` (if set); return its digest.

    The file is written to a temporary name and renamed, so a log is either complete or
    absent. Without a log directory the record is only hashed.
    """
    data = record_bytes(record)
    if context.log_dir is not None:
        log_dir = Path(context.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        name = f"{safe_stem(evaluation_id)}-step{context.step}-{uuid.uuid4().hex[:8]}.json"
        tmp = log_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, log_dir / name)
    return sha256_hex(data)


def context_record(context: EvalContext) -> dict[str, Any]:
    """The context fields a log records, so a log names the run, step and weights it measured."""
    return context.model_dump(mode="json", exclude={"log_dir"})
