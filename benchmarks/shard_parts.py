"""Benchmark BL30K `--part` runs over S3: index once, parts balanced by bytes, bytes each part fetches.

Input: a BL30K-layout segment of the real bundled DAVIS frames and masks repeated under new video names
(`tar cf` order: all JPEGImages, then all Annotations), served by a real `rclone serve s3` on 127.0.0.1
behind a byte-counting proxy (tests/s3_server.py: the bytes the server sent, HTTP headers included).

    python benchmarks/shard_parts.py [--copies 4]

Rows: the member scan (writes the index), and for N = 2, 3, 4 parts the largest/mean part bytes when
parts are cut by bytes (this project) and by count (before), then part 0 of 2 read through the stored
index: bytes fetched against its own videos' bytes and the other part's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from benchmarks.report import write_section  # noqa: E402
from stcn.data.fetch.sources import bl30k_members, bundled_videos, write_tar  # noqa: E402
from stcn.data.shards.build import bl30k_member_index, shard_bl30k  # noqa: E402
from stcn.data.shards.parallel import part_bounds  # noqa: E402


def spread(sizes: list[int], bounds: list[int]) -> float:
    """Largest part's bytes / mean part bytes."""
    parts = [sum(sizes[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return max(parts) / (sum(parts) / len(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=4, help="copies of the 5 bundled videos in the segment")
    args = ap.parse_args()
    from s3_server import ByteCountingProxy, rclone_s3

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "s3" / "b").mkdir(parents=True)
        videos = [(f"{name}-{k}", frames) for k in range(args.copies) for name, frames in bundled_videos()]
        seg = write_tar(tmp / "s3" / "b" / "BL30K_a.tar", bl30k_members(sorted(videos)))
        with rclone_s3(tmp / "s3") as server:
            os.environ.update(server.env())
            proxy = ByteCountingProxy(server.endpoint_url)
            os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint_url
            try:
                url, index_url = "s3://b/BL30K_a.tar", "s3://b/bl30k-index.npz"
                index = bl30k_member_index([url], index_url, lambda _: None)
                size = seg.stat().st_size
                rows.append({"step": "member scan (once; writes the index)", "MB fetched": proxy.received / 1e6,
                             "of the segment": f"{100 * proxy.received / size:.1f} %",
                             "note": f"index file {(tmp / 's3/b/bl30k-index.npz').stat().st_size} bytes"})  # fmt: skip
                sizes = [index.video_bytes(r) for _, r in index.groups()]
                for n in (2, 3, 4):
                    by_count = [i * len(sizes) // n for i in range(n + 1)]
                    rows.append({"step": f"{n} parts of {len(sizes)} videos: largest/mean bytes",
                                 "note": f"by bytes {spread(sizes, part_bounds(sizes, n)):.3f}, "
                                         f"by count {spread(sizes, by_count):.3f}"})  # fmt: skip
                bounds = part_bounds(sizes, 2)
                own, other = sum(sizes[: bounds[1]]), sum(sizes[bounds[1] :])
                before = proxy.received
                shard_bl30k([url], str(tmp / "out"), shard_size_mb=4, part="0/2", index=index_url, workers=1)
                got = proxy.received - before
                extra = f"{(got - own) / 1e6:.2f} MB = {100 * (got - own) / other:.2f} % of the other part's"
                rows.append({"step": "part 0/2 through the stored index", "MB fetched": got / 1e6,
                             "of the segment": f"{100 * got / size:.1f} %",
                             "note": f"own {own / 1e6:.1f} MB; beyond them {extra} {other / 1e6:.1f} MB"})  # fmt: skip
            finally:
                proxy.stop()
    table = pd.DataFrame(rows).fillna("")
    notes = (
        f"Segment of {len(videos)} videos ({size / 1e6:.0f} MB, frames and masks half a segment apart), rclone "
        "serve s3 on 127.0.0.1 behind a byte-counting proxy. The scan reads every tar header, which over S3 "
        "fetches about the whole segment; part runs load the small index instead and fetch their videos by "
        "coalesced byte ranges (2 requests a video here). With few videos per part the byte balance is limited "
        "by the video size (4 parts of 5 videos); BL30K's ~30k videos split finely. "
        f"Load average (1/5/15 min) at start: {load}, shared machine."
    )
    print(write_section("BL30K parts over S3: index once, balance, bytes per part", table, notes))


if __name__ == "__main__":
    main()
