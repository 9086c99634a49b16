"""`star` under a launcher, with two test hooks set by environment variables (the CLI knows
nothing of them; they patch the scorer from outside):

STAR_TEST_RECORD=path   each process appends the description of every part it scores to
                        path.<rank>, so a test can tell which parts a resumed pass computed.
STAR_TEST_CRASH=r:text  the process of rank r dies (os._exit(3), as a kill would leave it) when
                        it is about to score a part whose description contains `text`.

Run as `torchrun --standalone --nproc_per_node 2 tests/launch_star.py run ...`.
"""

from __future__ import annotations

import os
import sys

import star.active.scorer as scorer
from star.tools.cli import main

original = scorer.score_pool


def watched_score_pool(*args, **kwargs):
    rank, desc = os.environ.get("RANK", "0"), kwargs.get("desc", "")
    crash = os.environ.get("STAR_TEST_CRASH")
    if crash:
        crash_rank, text = crash.split(":", 1)
        if rank == crash_rank and text in desc:
            os._exit(3)
    record = os.environ.get("STAR_TEST_RECORD")
    if record:
        with open(f"{record}.{rank}", "a", encoding="utf-8") as handle:
            handle.write(desc + "\n")
    return original(*args, **kwargs)


scorer.score_pool = watched_score_pool

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
