"""Run ``manage.py`` in an interpreter that gevent patched first.

``python -m django_zrpc.launcher manage.py runrpc ...`` (or ``-m django
runrpc ...``) patches the standard
library before Django, the project or a database driver is imported, then runs
``manage.py`` itself as ``__main__``, so whatever it does before calling Django
(changing ``sys.path``, choosing settings) happens as usual. ``runrpc``
re-executes itself through this module, so the ``manage.py`` that
``startproject`` writes needs no edit.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import runpy  # noqa: E402
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
    args = sys.argv[1:]
    if not args or (args[0] == "-m" and len(args) < 2):
        sys.exit("usage: python -m django_zrpc.launcher (SCRIPT | -m MODULE) [ARGS ...]")
    _patch_psycopg2()
    if args[0] == "-m":
        # As `python -m MODULE` would: the current directory stays first on sys.path.
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        # As `python manage.py` would: the script's folder first on sys.path,
        # not the current directory that `-m` put there.
        sys.argv = args
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
