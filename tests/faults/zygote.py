"""Starts `careline` commands in a blink: Django is set up once here, each command runs
in a fork of this process, as `careline <command>` would run it.

A fresh interpreter takes a second or two to import Careline; a test that kills and
restarts the worker dozens of times would spend most of its time there. Protocol, one
line each way: the test writes a command line; this answers `<pid>` once the command's
process exists, then `exit <status>` when it ends (negative: killed by that signal).
"""

from __future__ import annotations

import os
import sys
import traceback


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    # Import what the worker needs before forking, so no child pays for it.
    import careline.web.management.commands.worker  # noqa: F401
    from careline.messaging import dispatch  # noqa: F401

    connections.close_all()  # a child must never share the parent's database connection

    for line in sys.stdin:
        argv = line.split()
        if not argv:
            continue
        pid = os.fork()
        if pid == 0:
            # The command's own output must not mix with the protocol.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            status = 0
            try:
                call_command(*argv)
            except BaseException:  # noqa: BLE001 — reported as the exit status
                traceback.print_exc()
                status = 1
            os._exit(status)
        print(pid, flush=True)
        _, wait_status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(wait_status)}", flush=True)


if __name__ == "__main__":
    main()
