"""Find the code blocks of a Markdown document and run them as a newcomer would (see test_docs_run.py).

A block is a fenced block tagged ``python``, ``bash``, ``sh`` or ``console``; untagged blocks
(synopses, trees, output) and ``python file=PATH`` blocks (files written out, not run) are not run.
``<!-- not run in CI: REASON -->`` just before a block skips it; the reason is required.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*not run in CI\b(.*?)-->\s*\Z", re.S | re.I)
RUN = {"python", "bash", "sh", "console"}
# what keeps running in a real shell: started, probed, then stopped (or, with a trailing `&`, kept
# running until the document's last block has run)
LONG = re.compile(r"^engram\s+(serve|sandbox|worker(?!.*--once)|schedule\s+run)\b")
COMMENT = re.compile(r"\s+#[^'\"]*$")  # a trailing shell comment
PORT = re.compile(r"(127\.0\.0\.1:|--port\s+)(\d{4,5})\b")


class DocError(AssertionError):
    """A block failed, or a marker gives no reason."""


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    code: str
    skip: str | None = None  # the reason it is not run, from its marker

    def where(self) -> str:
        return f"{self.doc}:{self.line} ({self.lang})"


def blocks(text: str, doc: str) -> list[Block]:
    out = []
    for m in FENCE.finditer(text):
        info = m.group(1).strip()
        lang = info.split()[0] if info else ""
        if lang not in RUN or "file=" in info:
            continue
        line = text.count("\n", 0, m.start()) + 1
        block = Block(doc, line, lang, m.group(2))
        before = MARKER.search(text[max(0, m.start() - 400):m.start()])
        if before:
            reason = before.group(1).strip().lstrip(":").strip()
            if not reason:
                raise DocError(f"{block.where()}: the not-run marker gives no reason "
                               "(write <!-- not run in CI: why -->)")
            block.skip = reason
        out.append(block)
    return out


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) in order; `\\` continuations joined."""
    out: list[tuple[str, list[str]]] = []
    lines = block.code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if block.lang == "console" and not line.startswith("$ "):
            if out:
                out[-1][1].append(line)
            i += 1
            continue
        cmd = line[2:] if block.lang == "console" else line
        while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd.rstrip()[:-1] + " " + lines[i].strip()
        if cmd.strip() and not cmd.lstrip().startswith("#"):
            out.append((cmd, []))
        i += 1
    return out


def _squash(text: str) -> str:
    return re.sub(r"\(\d+(\.\d+)?s\)", "(Ns)", " ".join(text.split()))


@dataclass
class Session:
    """One document's shell: environment, working directory, background processes, Python namespace."""

    env: dict[str, str]
    cwd: Path
    ports: dict[str, str] = field(default_factory=dict)
    substitutions: dict[str, str] = field(default_factory=dict)  # documented placeholder -> local value
    background: list[subprocess.Popen] = field(default_factory=list)
    namespace: dict[str, object] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def port(self, text: str) -> str:
        """Documented ports (8000, 8765, ...) become free ones, the same for the whole document."""
        def sub(m: re.Match) -> str:
            if m.group(2) not in self.ports:
                self.ports[m.group(2)] = str(_free_port())
            return m.group(1) + self.ports[m.group(2)]
        subs = list(self.substitutions.items())
        for i, (placeholder, _) in enumerate(subs):
            text = text.replace(placeholder, f"\0{i}\0")
        text = PORT.sub(sub, text)
        for i, (_, value) in enumerate(subs):
            text = text.replace(f"\0{i}\0", value)
        return text

    # --- running ---------------------------------------------------------------------------------

    def run(self, block: Block) -> None:
        if block.lang == "python":
            self._python(block)
            return
        for cmd, expected in commands(block):
            cmd = COMMENT.sub("", self.port(cmd))
            background = cmd.rstrip().endswith("&")
            cmd = cmd.rstrip().rstrip("&").rstrip()
            m = LONG.match(cmd)
            if m:
                self._long(block, cmd, m.group(1).split()[0], background)
            elif background:
                raise DocError(f"{block.where()}: `{cmd} &` is not a long-running command this test knows")
            else:
                out = self._shell(block, cmd)
                if expected:
                    shown = _squash("\n".join(expected))
                    if shown and shown not in _squash(out):
                        raise DocError(f"{block.where()}: `{cmd}` printed\n{out}\nnot what the doc shows:\n"
                                       + "\n".join(expected))

    def _shell(self, block: Block, cmd: str) -> str:
        with tempfile.NamedTemporaryFile(delete=False) as f:
            envfile = f.name
        script = f"set -e -o pipefail\n{cmd}\nenv -0 > {envfile}\n"
        try:
            proc = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, capture_output=True,
                                  text=True, timeout=180)
            self.log.append(f"$ {cmd}\n{proc.stdout}{proc.stderr}")
            if proc.returncode != 0:
                raise DocError(f"{block.where()}: `{cmd}` exited {proc.returncode}\n{proc.stdout[-3000:]}"
                               f"\n{proc.stderr[-3000:]}")
            pairs = Path(envfile).read_bytes().split(b"\0")
            self.env = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
            self.cwd = Path(self.env.get("PWD", self.cwd))
            return proc.stdout + proc.stderr
        finally:
            os.unlink(envfile)

    def _long(self, block: Block, cmd: str, kind: str, background: bool) -> None:
        log = self.cwd / f".doc-{len(self.log)}.log"
        proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=self.cwd, env=self.env,
                                stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.log.append(f"$ {cmd} ({'background' if background else 'started, probed, stopped'})")
        try:
            self._probe(block, cmd, kind, proc, log)
        except BaseException:
            _stop(proc)
            raise
        if background:
            self.background.append(proc)
        else:
            _stop(proc)

    def _probe(self, block: Block, cmd: str, kind: str, proc: subprocess.Popen, log: Path) -> None:
        want = {"sandbox": "listening on", "worker": "worker running", "schedule": "scheduler running"}.get(kind)
        port = re.search(r"--port\s+(\d+)", cmd)
        url = f"http://127.0.0.1:{port.group(1) if port else 8000}/v1/health"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DocError(f"{block.where()}: `{cmd}` exited {proc.returncode}\n{log.read_text()[-3000:]}")
            if want and want in log.read_text():
                return
            if kind == "serve":
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise DocError(f"{block.where()}: `{cmd}` did not come up in 60 s\n{log.read_text()[-3000:]}")

    def _python(self, block: Block) -> None:
        code = self.port(block.code)
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        os.environ.clear()
        os.environ.update(self.env)
        os.chdir(self.cwd)
        try:
            exec(compile(code, block.where(), "exec"), self.namespace)
        except Exception as exc:
            raise DocError(f"{block.where()}: {type(exc).__name__}: {exc}") from exc
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)

    def close(self) -> None:
        for proc in reversed(self.background):
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C, as a user would; then SIGKILL if it does not stop within 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_document(text: str, doc: str, session: Session) -> list[Block]:
    """Run every block in order; returns the blocks skipped by a marker."""
    skipped = []
    try:
        for block in blocks(text, doc):
            if block.skip:
                skipped.append(block)
            else:
                session.run(block)
    finally:
        session.close()
    return skipped


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment less ENGRAM_*, with this interpreter's scripts first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["HOME"] = str(home)
    env["COLUMNS"] = "200"
    env.update(extra)
    return env
