"""Run a management command in an interpreter that gevent patched first.

``python -m django_zrpc.launcher manage.py runrpc ...`` patches the standard
library before Django, the project or a database driver is imported, then runs
the command exactly as ``manage.py`` would. ``runrpc`` re-executes itself
through this module, so the ``manage.py`` that ``startproject`` writes needs no
edit; Django's autoreloader restarts its child the same way (it re-runs
``python -m <this module>``).
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402


def _patch_psycopg2() -> None:
    # psycopg 3.1.14+ cooperates with a patched process by itself; psycopg2
    # needs psycogreen's wait callback.
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return
    try:
        from psycogreen.gevent import patch_psycopg
    except ImportError:
        sys.stderr.write(
            "Warning: psycopg2 blocks the gevent loop without psycogreen; "
            "pip install psycogreen (or use psycopg 3.1.14+).\n"
        )
        return
    patch_psycopg()


def main() -> None:
    _patch_psycopg2()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv[1:])


if __name__ == "__main__":
    main()
