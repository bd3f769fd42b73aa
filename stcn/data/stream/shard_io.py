"""Reading WebDataset shards: the samples (raw bytes per field) of an opened shard, S3 for plain `webdataset`
(`s3://` registered on import), and the next shard opened while the current one is decoded."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import webdataset as wds

from stcn.data.storage import _reason, open_shard
from stcn.errors import UserError


def read_shard(url: str, stream: BinaryIO) -> Iterator[dict[str, Any]]:
    """Samples (raw bytes per field) of one opened shard; a corrupt shard is a UserError naming it."""
    try:
        files = wds.tariterators.tar_file_expander([{"url": url, "stream": stream}])
        yield from wds.tariterators.group_by_keys(files)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"corrupt or unreadable shard {url}: {_reason(e)}") from None
    finally:
        stream.close()


def _gopen_s3(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any) -> BinaryIO:
    if mode != "rb":
        raise UserError(f"s3 shards are read-only here: {url}")
    return open_shard(url)


# lets plain `webdataset.WebDataset("s3://...")` read S3 once this module is imported
importlib.import_module("webdataset.gopen").gopen_schemes.setdefault("s3", _gopen_s3)


def opened_ahead(src: Iterator[dict[str, Any]], env: dict[str, str]) -> Iterator[tuple[dict[str, Any], BinaryIO]]:
    """(item, its opened shard), opening the next shard before the current one is handed out, so an
    S3 shard downloads (`s3_stream` reads ahead) while the samples of the one before are decoded."""
    ahead = None
    try:
        for item in src:
            opened = (item, open_shard(item["url"], env))
            if ahead is not None:
                current, ahead = ahead, None
                yield current
            ahead = opened
        if ahead is not None:
            current, ahead = ahead, None
            yield current
    finally:
        if ahead is not None:
            ahead[1].close()
