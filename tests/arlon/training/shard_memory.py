"""Stream one epoch of a prepared folder and print how far the resident memory rose above where it
started, in MiB: the largest RSS read after each batch, less the RSS before the first (Linux /proc).
tests/arlon/training/test_shards.py runs it in a fresh process per folder.

    python tests/arlon/training/shard_memory.py FOLDER BATCH
"""

from __future__ import annotations

import sys

from arlon.training.shards import ShardedLatents


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * 4096 / 2**20


if __name__ == "__main__":
    folder, batch = sys.argv[1], int(sys.argv[2])
    stream = ShardedLatents(folder, batch_size=batch, seed=0, verify=False)
    batches = stream.batches(0)
    seen = next(batches).x.shape[0]  # the first batch warms up the allocator and the reader
    before = highest = rss_mib()
    for _ in range(stream.batches_per_epoch() - 1):
        seen += next(batches).x.shape[0]
        highest = max(highest, rss_mib())
    print(f"{seen} {highest - before:.1f}")
