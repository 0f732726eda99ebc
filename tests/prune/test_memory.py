import platform
from pathlib import Path

import pytest

from medprune.prune.memory import release_free_memory


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_free_heap_pages_go_back_to_the_os():
    # 200 MB in 100 kB blocks (below glibc's mmap threshold, so they live in the heap); every
    # 20th block stays alive, so the freed ones are holes the heap cannot simply shrink past.
    blocks = [bytearray(b"x" * 100_000) for _ in range(2000)]
    keep = blocks[::20]
    del blocks
    held = _rss_mb()
    assert release_free_memory() is True
    assert _rss_mb() < held - 100  # most of the ~190 MB of holes is returned
    assert len(keep) == 100
