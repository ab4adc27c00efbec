"""A status line for each slow phase, on a terminal only.

Long phases without a progress bar (the Keras export in TensorFlow's child process, the ONNX
import) announce themselves, so a user does not look at a silent terminal for a minute; pipes, CI
logs and ``CONVERT2SNN_QUIET=1`` stay quiet. Phases with a loop use tqdm bars instead
(`convert2snn.progress`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# A phase is announced once it has run this long (seconds): quick phases print nothing.
ANNOUNCE_AFTER_S = 1.0


def shown(enabled: bool = True) -> bool:
    """Whether status lines and progress bars are shown: ``enabled``, on a terminal, not quieted."""
    return bool(enabled) and not os.environ.get("CONVERT2SNN_QUIET") and sys.stderr.isatty()


@contextmanager
def status(message: str, enabled: bool = True) -> Iterator[None]:
    """Print ``message …`` once the phase has run `ANNOUNCE_AFTER_S`, and then its time at the end."""
    if not shown(enabled):
        yield
        return
    start = time.perf_counter()
    announced = threading.Event()

    def announce() -> None:
        print(f"convert2snn: {message} …", file=sys.stderr, flush=True)
        announced.set()

    timer = threading.Timer(ANNOUNCE_AFTER_S, announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()  # an announcement under way is finished before the time is printed
        if announced.is_set():
            print(f"convert2snn: {message}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
