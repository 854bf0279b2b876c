"""Sphinx directives that write the reference from the code, so that it cannot fall behind.

- the settings page is checked: a key of ``DEFAULTS`` it does not name fails
  the build;
- the checks page too, against the ids the package raises, and the
  commands page against the management commands there are;
- ``.. zrpc-settings::``: every key of ``django_zrpc.conf.DEFAULTS`` as
  ``ZRPC_<KEY>``, its default and the comment above it in ``conf.py``.
- ``.. zrpc-command:: runrpc``: a management command's help and every option
  of its argument parser.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util import logging

logger = logging.getLogger(__name__)


def setting_comments(source: str) -> dict[str, str]:
    """Map each key of ``DEFAULTS`` in conf.py's ``source`` to the comment block above it.

    A comment above several keys in a row (the limits, say) is theirs alike.
    """
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    tree = ast.parse(source)
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if not any(isinstance(t, ast.Name) and t.id == "DEFAULTS" for t in targets):
                continue
            last = ""
            for key in node.value.keys:
                assert isinstance(key, ast.Constant)
                line = key.lineno - 1
                block: list[str] = []
                while line in comments:
                    block.insert(0, comments[line])
                    line -= 1
                if block:
                    last = " ".join(block)
                found[key.value] = last
    return found


class SettingsDirective(Directive):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from django_zrpc import conf

        comments = setting_comments(Path(conf.__file__).read_text())
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 25 20 55",
            "",
            "   * - Setting",
            "     - Default",
            "     - Meaning",
        ]
        for key, default in conf.DEFAULTS.items():
            lines += [
                f"   * - .. _setting-{key.lower().replace('_', '-')}:",
                "",
                f"       ``ZRPC_{key}``",
                f"     - ``{default!r}``",
                f"     - {comments.get(key) or '(see the text above)'}",
            ]
        return _parse(self, lines)


class CommandDirective(Directive):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        from django.core.management import load_command_class

        name = self.arguments[0]
        command = load_command_class("django_zrpc", name)
        parser = command.create_parser("manage.py", name)
        lines = [command.help.strip(), "", "::", ""]
        lines += ["    " + line for line in parser.format_usage().strip().splitlines()]
        lines += ["", ".. list-table::", "   :header-rows: 1", "   :widths: 30 70", ""]
        lines += ["   * - Option", "     - Meaning"]
        base = {a.dest for a in _django_base_actions()}
        for action in parser._actions:
            if action.dest in base or action.dest == "help":
                continue
            flags = ", ".join(action.option_strings) or action.dest
            meaning = (action.help or "").replace("%(default)s", str(action.default))
            meaning = meaning.replace("%%", "%")
            lines += [f"   * - ``{flags}``", f"     - {_escape(meaning) or '-'}"]
        lines += ["", "Django's common options (``--settings``, ``--verbosity``, ...) also apply."]
        return _parse(self, lines)


def _django_base_actions() -> list[Any]:
    from django.core.management.base import BaseCommand

    return BaseCommand().create_parser("manage.py", "base")._actions


def _escape(text: str) -> str:
    return text.replace("*", r"\*").replace("`", r"\`").replace("|", r"\|")


def _parse(directive: Directive, lines: list[str]) -> list[nodes.Node]:
    container = nodes.container()
    directive.state.nested_parse(StringList(lines, "zrpc_reference"), 0, container)
    return container.children


def check_settings_page(app: Any, docname: str, source: list[str]) -> None:
    """Fail the build (a warning, under ``-W``) for a setting the settings page does not name."""
    if docname != "reference/settings":
        return
    from django_zrpc import conf

    for key in conf.DEFAULTS:
        if f"``ZRPC_{key}``" not in source[0]:
            logger.warning("reference/settings.rst does not describe ZRPC_%s", key)


CHECK_ID = re.compile(r"django_zrpc\.[EW]\d{3}|\"[EW]\d{3}\"")


def check_checks_page(app: Any, docname: str, source: list[str]) -> None:
    """Fail the build for a check id the package raises that the checks page does not list."""
    if docname != "reference/checks":
        return
    import django_zrpc

    package = Path(django_zrpc.__file__).parent
    for path in sorted(package.rglob("*.py")):
        for found in CHECK_ID.findall(path.read_text()):
            check_id = found.strip('"').removeprefix("django_zrpc.")
            if f"``django_zrpc.{check_id}``" not in source[0]:
                logger.warning("reference/checks.rst does not list %s (%s)", check_id, path.name)


def check_commands_page(app: Any, docname: str, source: list[str]) -> None:
    """Fail the build for a management command the commands page does not document."""
    if docname != "reference/commands":
        return
    import django_zrpc

    commands = Path(django_zrpc.__file__).parent / "management" / "commands"
    for path in sorted(commands.glob("*.py")):
        if path.stem != "__init__" and f".. zrpc-command:: {path.stem}" not in source[0]:
            logger.warning("reference/commands.rst does not document %s", path.stem)


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", check_commands_page)
    app.connect("source-read", check_settings_page)
    app.connect("source-read", check_checks_page)
    app.add_directive("zrpc-settings", SettingsDirective)
    app.add_directive("zrpc-command", CommandDirective)
    return {"parallel_read_safe": True}
