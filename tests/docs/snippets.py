#!/usr/bin/env python3
"""Docs that compile: every fenced code block of the given Markdown files is
checked against the code it shows, so the docs cannot drift from it.

Each fenced block must have a marker on the line right before its opening
fence, an HTML comment (invisible once rendered):

    <!-- snippet: LANG MODE [key=value | key="quoted value"]... -->

and LANG must match the fence's info string (c, cpp, sh, cmake, text).
A block without one fails the test, named by file and line, and so does an
indented (unfenced) code block, which has no place for a marker. The modes:

  c|cpp program name=N [args="..."]
      A complete program: compiled as C11 (c) or C++20 (cpp) with -Wall
      -Wextra -Werror against the library installed into a scratch prefix
      (`cmake --install --component runtime|dev`, as a user installs it),
      found with pkg-config, then run; it must exit 0 within 60 s.
  c|cpp compile name=N reason="..."
      As program, but only compiled and linked (the reason says why it does
      not run here).
  c|cpp excerpt from=PATH | from=snippet:N
      Lines of a file of the repository that the test suite builds and runs
      (examples/, tests/), or of program N above. Every line of the block
      except those holding `...` (the elisions) must appear there, in the
      same order (leading and trailing blanks aside): a change to the file
      that the excerpt does not follow fails here.
  cmake project main=N
      A CMake project: configured against the scratch prefix
      (CMAKE_PREFIX_PATH), with the program N as its driver.c; built, run.
  sh check
      Commands a user types that are not safe or fast to run here (they
      install packages, build the tree, start a long-lived host). Each
      command's first word must be a shell builtin, an executable script of
      the repository, a program the build makes (`build/...`: looked up in
      the build tree under test), the `ndisshm` CLI, or a system command the
      README's package table installs. For `ndisshm SUBCOMMAND`, every
      `--option` must appear in that subcommand's `--help` (when the CLI is
      built). Not run: they install packages, build the tree or start a
      long-lived host.
  sh run [prefix=/opt/ndisshm] [FILE=N]...
      Safe and fast: run with bash -eu in a scratch folder, `prefix`
      replaced by the scratch prefix, and each FILE (e.g. driver.c=N) written
      there from program N first. It must exit 0.
  LANG skip reason="..."
      Not code to type (an output sample): not checked.

Usage: snippets.py --source DIR --build DIR --work DIR [--check-only] FILE.md...
(--check-only: markers, excerpts and shell words; nothing compiled or run).
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$")
# Any indentation: a fence nested in a list item must not escape the marker rule.
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
ATTR = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S+)')

LANGS = {"c", "cpp", "sh", "cmake", "text"}
MODES = {
    "c": {"program", "compile", "excerpt", "skip"},
    "cpp": {"program", "compile", "excerpt", "skip"},
    "sh": {"check", "run", "skip"},
    "cmake": {"project", "skip"},
    "text": {"skip"},
}
# The fence info strings each LANG accepts.
FENCE_LANGS = {"c": {"c"}, "cpp": {"cpp", "c++"}, "sh": {"sh", "bash", "shell"}, "cmake": {"cmake"}, "text": {"text"}}

# Commands a shell block may start with, beyond the repository's own: shell
# builtins, and the system tools README.md's package table installs.
BUILTINS = {"export", "cd", "set"}
SYSTEM_COMMANDS = {
    "cmake", "ctest", "cpack", "ninja", "cc", "c++", "gcc", "g++", "pkg-config", "apt", "apt-get",
    "systemctl", "ip", "python3",
}


class Snippet:
    def __init__(self, path, line, lang, mode, attrs, fence_lang, body):
        self.path, self.line, self.lang, self.mode = path, line, lang, mode
        self.attrs, self.fence_lang, self.body = attrs, fence_lang, body

    def where(self):
        return f"{self.path}:{self.line}"


def parse_attrs(text):
    attrs = {}
    for key, value in ATTR.findall(text):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        attrs[key] = value
    return attrs


def extract(md_path, display, errors):
    """The fenced blocks of one Markdown file, each with its marker."""
    lines = md_path.read_text(encoding="utf-8").split("\n")
    snippets = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            # Markdown's other code block, indented by four spaces after a blank
            # line, has no place for a marker: it would escape, so it is refused.
            if re.match(r"^( {4}|\t)\s*\S", lines[i]) and i > 0 and not lines[i - 1].strip():
                errors.append(f"{display}:{i + 1}: indented code block: fence it and mark it")
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3)
        start = i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            errors.append(f"{display}:{start + 1}: fence never closed")
        i += 1
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        if not marker:
            errors.append(f"{display}:{start + 1}: fenced block ({info or 'no language'}) without a "
                          "'<!-- snippet: ... -->' marker on the line before it")
            continue
        words = marker.group(1).split(None, 2)
        if len(words) < 2:
            errors.append(f"{display}:{start}: marker needs LANG and MODE: {marker.group(1)!r}")
            continue
        lang, mode = words[0], words[1]
        attrs = parse_attrs(words[2] if len(words) > 2 else "")
        snippets.append(Snippet(display, start + 1, lang, mode, attrs, info, "\n".join(body) + "\n"))
    return snippets


def validate(s, errors):
    if s.lang not in LANGS:
        errors.append(f"{s.where()}: unknown LANG {s.lang!r} (one of {sorted(LANGS)})")
        return False
    if s.mode not in MODES[s.lang]:
        errors.append(f"{s.where()}: {s.lang} block with unknown MODE {s.mode!r} (one of {sorted(MODES[s.lang])})")
        return False
    if s.fence_lang not in FENCE_LANGS[s.lang]:
        errors.append(f"{s.where()}: marked {s.lang} but fenced as {s.fence_lang or 'nothing'!r}")
        return False
    needed = {"program": ["name"], "compile": ["name", "reason"], "excerpt": ["from"], "project": ["main"],
              "skip": ["reason"]}.get(s.mode, [])
    for key in needed:
        if key not in s.attrs:
            errors.append(f"{s.where()}: {s.lang} {s.mode} needs {key}=")
            return False
    return True


def check_excerpt(s, source, programs, errors):
    """Every line but the elisions, in order, in the file (or program snippet) it names."""
    origin = s.attrs["from"]
    if origin.startswith("snippet:"):
        if origin[len("snippet:"):] not in programs:
            errors.append(f"{s.where()}: excerpt from {origin}, which names no program snippet")
            return
        text = programs[origin[len("snippet:"):]].body
    else:
        path = source / origin
        if not path.is_file():
            errors.append(f"{s.where()}: excerpt from {origin}, which does not exist")
            return
        text = path.read_text(encoding="utf-8")
    have = [line.strip() for line in text.split("\n")]
    at = 0
    for n, line in enumerate(s.body.split("\n")):
        want = line.strip()
        if not want or "..." in want:
            continue
        try:
            at = have.index(want, at) + 1
        except ValueError:
            errors.append(f"{s.path}:{s.line + 1 + n}: excerpt line not found in {s.attrs['from']} "
                          f"(in this order): {want!r}")
            return


def shell_commands(body):
    """(line offset, words) for each simple command of a shell block."""
    joined, start, pending = [], 0, ""
    for n, line in enumerate(body.split("\n")):
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((start, pending + line))
        pending = ""
    for n, line in joined:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError as e:
            yield n, None, str(e)
            continue
        words = []
        for token in tokens + [";"]:
            if token and set(token) <= set(";&|()"):
                if words:
                    yield n, words, None
                words = []
            else:
                words.append(token)


def cli_help(cli, sub, cache):
    if sub not in cache:
        r = subprocess.run([str(cli), sub, "--help"], capture_output=True, text=True, timeout=30)
        cache[sub] = r.stdout + r.stderr if r.returncode == 0 else None
    return cache[sub]


def check_shell(s, source, build, errors):
    cli = build / "tools" / "ndisshm" / "ndisshm"
    helps = {}
    for n, words, problem in shell_commands(s.body):
        where = f"{s.path}:{s.line + 1 + n}"
        if problem:
            errors.append(f"{where}: cannot split the command line: {problem}")
            continue
        while words and re.match(r"^[A-Za-z_]\w*=", words[0]):  # VAR=value before the command
            words = words[1:]
        if not words:
            continue
        first = words[0]
        if first in BUILTINS or first in SYSTEM_COMMANDS:
            continue
        if first == "ndisshm" or first.startswith("build/") or first.startswith("build-"):
            if first == "ndisshm":
                built = cli
            else:  # build/<path>: the same path in the build tree under test
                built = build / first.split("/", 1)[1]
            if built == cli and not cli.exists() and (source / "tools" / "ndisshm").is_dir():
                continue  # a build without the CLI (NDISSHM_BUILD_TOOLS=OFF): its options go unchecked
            if not (built.is_file() and os.access(built, os.X_OK)):
                errors.append(f"{where}: {first}: the build makes no {built.relative_to(build)}")
                continue
            if built == cli and len(words) > 1 and cli.is_file():
                text = cli_help(cli, words[1], helps)
                if text is None:
                    errors.append(f"{where}: `ndisshm {words[1]} --help` fails: no such subcommand?")
                    continue
                for word in words[2:]:
                    option = word.split("=", 1)[0]
                    if option.startswith("--") and option not in text:
                        errors.append(f"{where}: `ndisshm {words[1]}` has no option {option}")
            continue
        if "/" in first:
            path = source / first
            if not (path.is_file() and os.access(path, os.X_OK)):
                errors.append(f"{where}: {first} is no executable file of the repository")
            continue
        errors.append(f"{where}: {first}: not a command the docs or README's package table name")


def run(cmd, cwd, env=None, timeout=300):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def report(errors, where, what, result):
    out = (result.stdout + result.stderr).strip()
    errors.append(f"{where}: {what} (exit {result.returncode})" + (f"\n{out}" if out else ""))


class Builder:
    """Compiles and runs snippets against an install of the build tree."""

    def __init__(self, build, work, cc, cxx):
        self.build, self.work, self.cc, self.cxx = build, work, cc, cxx
        self.prefix = work / "prefix"
        self.env = dict(os.environ, PKG_CONFIG_PATH=str(self.prefix / "lib" / "pkgconfig"))
        self.env.pop("NDISSHM_QUIET", None)
        self.env.pop("NDISSHM_VERIFIER", None)

    def install(self, errors):
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        # runtime and dev: the shared library, the archive, headers, CMake package, .pc.
        for component in ("runtime", "dev"):
            r = run(["cmake", "--install", str(self.build), "--component", component, "--prefix", str(self.prefix)],
                    self.work)
            if r.returncode != 0:
                report(errors, str(self.build), f"cmake --install --component {component}", r)
                return False
        return True

    def flags(self, args):
        r = run(["pkg-config"] + args + ["ndisshm"], self.work, self.env)
        if r.returncode != 0:
            raise RuntimeError("pkg-config " + " ".join(args) + ": " + r.stderr)
        return shlex.split(r.stdout)

    def compile(self, s, errors):
        name = s.attrs["name"]
        src = self.work / (name + (".c" if s.lang == "c" else ".cpp"))
        src.write_text(s.body, encoding="utf-8")
        exe = self.work / name
        if s.lang == "c":
            cmd = [self.cc, "-std=c11", "-pedantic"]
        else:
            cmd = [self.cxx, "-std=c++20"]
        cmd += ["-Wall", "-Wextra", "-Werror"] + self.flags(["--cflags"]) + [str(src), "-o", str(exe)]
        cmd += self.flags(["--libs"]) + ["-Wl,-rpath," + str(self.prefix / "lib")]
        r = run(cmd, self.work, self.env)
        if r.returncode != 0:
            report(errors, s.where(), f"{name}: does not compile ({' '.join(cmd)})", r)
            return None
        return exe

    def run_program(self, s, exe, errors):
        args = shlex.split(s.attrs.get("args", ""))
        try:
            r = run([str(exe)] + args, self.work, self.env, timeout=60)
        except subprocess.TimeoutExpired:
            errors.append(f"{s.where()}: {s.attrs['name']}: still running after 60 s")
            return
        if r.returncode != 0:
            report(errors, s.where(), f"{s.attrs['name']}: exits non-zero", r)

    def cmake_project(self, s, programs, errors):
        main = programs.get(s.attrs["main"])
        if main is None:
            errors.append(f"{s.where()}: main={s.attrs['main']} names no c program snippet")
            return
        project = self.work / ("cmake-" + s.attrs["main"])
        project.mkdir()
        (project / "CMakeLists.txt").write_text(s.body, encoding="utf-8")
        (project / "driver.c").write_text(main.body, encoding="utf-8")
        out = project / "build"
        steps = [
            ["cmake", "-S", str(project), "-B", str(out), "-G", "Ninja", "-DCMAKE_PREFIX_PATH=" + str(self.prefix),
             "-DCMAKE_C_COMPILER=" + self.cc, "-DCMAKE_CXX_COMPILER=" + self.cxx, "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror"],
            ["cmake", "--build", str(out)],
        ]
        for cmd in steps:
            r = run(cmd, project, self.env)
            if r.returncode != 0:
                report(errors, s.where(), " ".join(cmd[:2]), r)
                return
        targets = re.findall(r"add_executable\((\w+)", s.body)
        for target in targets:
            r = run([str(out / target)], project, self.env, timeout=60)
            if r.returncode != 0:
                report(errors, s.where(), f"{target}, built by the CMake project, exits non-zero", r)

    def shell_run(self, s, programs, errors):
        folder = self.work / f"sh-{s.line}"
        folder.mkdir()
        for key, value in s.attrs.items():
            if key == "prefix":
                continue
            if value not in programs:
                errors.append(f"{s.where()}: {key}={value} names no program snippet")
                return
            (folder / key).write_text(programs[value].body, encoding="utf-8")
        body = s.body
        if "prefix" in s.attrs:
            body = body.replace(s.attrs["prefix"], str(self.prefix))
        r = run(["bash", "-euo", "pipefail", "-c", body], folder, dict(self.env, PKG_CONFIG_PATH=""))
        if r.returncode != 0:
            report(errors, s.where(), "shell block fails", r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, required=True)
    ap.add_argument("--build", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--cxx", default="c++")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("files", nargs="+")
    opts = ap.parse_args()
    opts.source, opts.build, opts.work = opts.source.resolve(), opts.build.resolve(), opts.work.resolve()
    errors = []
    snippets = []
    for name in opts.files:
        snippets += extract(opts.source / name, name, errors)
    snippets = [s for s in snippets if validate(s, errors)]
    programs = {}
    for s in snippets:
        if s.mode in ("program", "compile"):
            if s.attrs["name"] in programs:
                errors.append(f"{s.where()}: name={s.attrs['name']} used twice")
            programs[s.attrs["name"]] = s
    for s in snippets:
        if s.mode == "excerpt":
            check_excerpt(s, opts.source, programs, errors)
        elif s.mode == "check":
            check_shell(s, opts.source, opts.build, errors)
    counts = {}
    if not opts.check_only and not errors:
        b = Builder(opts.build, opts.work, opts.cc, opts.cxx)
        if b.install(errors):
            for s in snippets:
                if s.mode in ("program", "compile"):
                    exe = b.compile(s, errors)
                    if exe is not None and s.mode == "program":
                        b.run_program(s, exe, errors)
                elif s.mode == "project":
                    b.cmake_project(s, programs, errors)
                elif s.mode == "run":
                    b.shell_run(s, programs, errors)
    for s in snippets:
        key = f"{s.lang} {s.mode}"
        counts[key] = counts.get(key, 0) + 1
    for e in errors:
        print("docs: " + e, file=sys.stderr)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"docs: {len(snippets)} blocks ({summary}); {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
