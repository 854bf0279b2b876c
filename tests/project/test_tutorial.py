"""docs/tutorial.rst, followed to the letter on a fresh project, so that it cannot rot.

Every code block of the tutorial is run in order: a ``console`` block's
``$`` lines are commands (one ending in ``&`` is a server, left running
until the end and waited for until it prints the lines below it), the other
lines what the command must print; a block captioned with a file's path
writes that file (``PATH, at the end`` appends to it). The ports the
tutorial names are moved to free ones, the one change made to what it says.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, subprocess_env

TUTORIAL = ROOT / "docs" / "tutorial.rst"
PORTS = ("4242", "4343", "8000", "8001", "9242")
BIN = Path(sys.executable).parent


@dataclass
class Block:
    language: str
    caption: str | None
    lines: list[str] = field(default_factory=list)


def blocks(text: str) -> list[Block]:
    """The code blocks of an rst text, in order, with their captions."""
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = re.match(r"^\.\. code-block:: (\w+)$", lines[index])
        if match is None:
            assert not lines[index].rstrip().endswith("::") or lines[index].startswith(".."), (
                f"line {index + 1}: a literal block the tutorial test would not run; "
                "write it as a code-block"
            )
            index += 1
            continue
        block = Block(match.group(1), None)
        index += 1
        while index < len(lines) and lines[index].startswith("   :"):
            option = re.match(r"^   :caption: (.+)$", lines[index])
            if option:
                block.caption = option.group(1)
            index += 1
        while index < len(lines) and (not lines[index] or lines[index].startswith("   ")):
            block.lines.append(lines[index][3:])
            index += 1
        while block.lines and not block.lines[-1]:
            block.lines.pop()
        while block.lines and not block.lines[0]:
            block.lines.pop(0)
        found.append(block)
    return found


class Follower:
    """Runs the tutorial's steps in ``path``, with the ports moved."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ports = {port: str(free_port()) for port in PORTS}
        env = subprocess_env(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "ZRPC_LOG_CALLS"):
            env.pop(name, None)
        self.env = env
        self.servers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def moved(self, text: str) -> str:
        for old, new in self.ports.items():
            text = re.sub(rf"\b{old}\b", new, text)
        return text

    def write(self, caption: str, content: str) -> None:
        name, _, where = caption.partition(", ")
        target = self.path / name
        content = self.moved(content) + "\n"
        if where == "at end" or where == "at the end":
            with target.open("a") as file:
                file.write("\n" + content)
                if name.endswith("settings.py"):
                    # runrpc's own address follows the tutorial's, moved.
                    file.write(f'ZRPC_ADDRPORT = "127.0.0.1:{self.ports["4242"]}"\n')
        else:
            assert not where, f"unknown caption {caption!r}"
            target.write_text(content)

    def run(self, command: str, expected: list[str]) -> None:
        command = self.moved(command).replace("django-admin", f"{sys.executable} -m django")
        if command.endswith("&"):
            self.start(command[:-1].strip(), expected)
            return
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            timeout=180,
        )
        output = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == 0, f"$ {command}\n{output}"
        for line in expected:
            assert self.moved(line) in output, f"$ {command}: no {line!r} in\n{output}"

    def start(self, command: str, expected: list[str]) -> None:
        log = self.path / f"server-{len(self.servers)}.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.path,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append((server, log))
        deadline = time.monotonic() + 90
        wanted = [self.moved(line) for line in expected]
        while time.monotonic() < deadline:
            output = log.read_text(errors="replace")
            if all(line in output for line in wanted):
                return
            assert server.poll() is None, f"$ {command} ended:\n{output}"
            time.sleep(0.2)
        raise AssertionError(f"$ {command} never printed {wanted}:\n{log.read_text()}")

    def stop(self) -> None:
        for server, _ in self.servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
        for server, _ in self.servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


def test_every_block_of_the_tutorial_is_a_step_the_test_runs():
    found = blocks(TUTORIAL.read_text())
    assert len(found) > 10
    for block in found:
        if block.language == "console":
            assert block.lines, block
            assert block.lines[0].startswith("$ "), block
        else:
            assert block.caption, f"a {block.language} block with no file to write: {block}"


@pytest.mark.timeout(600)
def test_the_tutorial_works_on_a_fresh_project(tmp_path):
    follower = Follower(tmp_path)
    try:
        for block in blocks(TUTORIAL.read_text()):
            if block.language != "console":
                assert block.caption is not None
                follower.write(block.caption, "\n".join(block.lines))
                continue
            command: str | None = None
            expected: list[str] = []
            for line in [*block.lines, "$ "]:
                if line.startswith("$ "):
                    if command:
                        follower.run(command, expected)
                    command, expected = line[2:].strip(), []
                elif line.strip():
                    expected.append(line.strip())
    finally:
        follower.stop()
