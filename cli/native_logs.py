"""Native log lines off the terminal (issue 24's walk: ``poses extract`` and ``animate`` printed
MediaPipe's absl and TensorFlow Lite lines without ``--verbose``).

Those lines are written by C++ straight to file descriptor 2; absl ignores ``GLOG_minloglevel`` and
TFLite's XNNPACK line ignores ``TF_CPP_MIN_LOG_LEVEL``, so no Python logger or environment variable
stops them. :func:`filter_native_logs` puts a pipe on fd 2 and a thread that forwards every line to
the real stderr except the native log lines (absl's ``W0000 00:00:...] ...`` format and TFLite's
``INFO: Created TensorFlow Lite ...``); our own messages (``poseanimate: error: ...``, notes,
tracebacks) pass through unchanged, in order.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable

NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] "  # absl / glog
    rb"|INFO: Created TensorFlow Lite"  # TFLite's delegate line
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


def filter_native_logs() -> Callable[[], None]:
    """Filter fd 2 from now on; returns the function that puts the real stderr back (after
    forwarding what is still in the pipe). Call it before the process ends."""
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not NATIVE_LOG_LINE.match(line))
            if kept:
                os.write(real, kept)
        if pending and not NATIVE_LOG_LINE.match(pending):
            os.write(real, pending)
        os.close(read_end)

    thread = threading.Thread(target=pump, name="native-log-filter", daemon=True)
    thread.start()
    restored = False

    def restore() -> None:
        nonlocal restored
        if restored:
            return
        restored = True
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last write end closes: the pump reads to its end
        thread.join(timeout=5)
        os.close(real)

    return restore
