"""Deadlines for S3 listing, existence and index calls: an endpoint that accepts connections and never
answers is a one-line error naming it well within 60 s (botocore's defaults retry for minutes).

Worst case per request: s3fs tries it RETRIES times (its public `retries` attribute, default 5), each
one botocore attempt of at most `connect_timeout` (no connection) or `read_timeout` (no answer): 2 x 8 s.
An existence check may take two requests (HEAD, then a listing): about 35 s in all.
"""

from __future__ import annotations

import os
from typing import Any

CHECK_CONFIG = {"connect_timeout": 5, "read_timeout": 8, "retries": {"max_attempts": 1, "mode": "standard"}}
RETRIES = 2


def endpoint() -> str:
    """The S3 endpoint in use, for messages."""
    return os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


def s3_options() -> dict[str, Any]:
    """fsspec/s3fs options with bounded timeouts and retries (endpoint from AWS_ENDPOINT_URL when set)."""
    options: dict[str, Any] = {"config_kwargs": CHECK_CONFIG}
    if os.environ.get("AWS_ENDPOINT_URL"):
        options["client_kwargs"] = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
    return options


def bounded(fs: Any) -> Any:
    """`fs` with s3fs's own retry loop shortened (a no-op for other file systems)."""
    if getattr(fs, "protocol", None) and "s3" in fs.protocol and hasattr(fs, "retries"):
        fs.retries = RETRIES
    return fs


def check_filesystem() -> Any:
    """A fresh s3fs filesystem for quick metadata calls (credentials and region from the environment)."""
    import s3fs

    return bounded(s3fs.S3FileSystem(skip_instance_cache=True, **s3_options()))
