"""Config errors that name the file, the key and the choices (``ssl-norms fit|validate|test``).

jsonargparse reports a bad key inside a ``class_path`` block as a union of failed
alternatives ("Does not validate against any of the Union subtypes ... Expected a <class
'NoneType'>"), a YAML syntax error as coming from ``<unicode string>``, and an unknown
method without the known ones. :func:`explain_config_error` turns such a message into one
line: where the value was set (which ``-c`` file, or the command line), the full key, the
problem, and the valid choices or the closest option names.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "config_files",
    "explain_config_error",
    "find_key_source",
    "strip_union_listing",
    "yaml_problem",
]

# Lines of jsonargparse's union listing that never carry the point.
_NOISE = (
    re.compile(r"^Does not validate against any of the Union subtypes$"),
    re.compile(r"^Subtypes: "),
    re.compile(r"^Errors:$"),
    re.compile(r"^Expected a <class 'NoneType'>$"),
    re.compile(r"^Given value type: "),
    re.compile(r"^Given value: "),
    re.compile(r"^Expected a path but .* either not accessible or invalid$"),
)
_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_CLASS_PATH = re.compile(r"^Problem with given class_path '([^']+)':\s*(.*)$")
_NOT_ACCEPTED = re.compile(
    r"^(?:(?:Option|Key) '([^']+)' is not (?:accepted|expected)"
    r"|Subcommand '[^']+' does not accept option '([^']+)')"
)
_GROUP = re.compile(r"^Group '([^']+)' does not accept option '([^']+)'")
_EXPECTED = re.compile(r"^Expected a <class '([^']+)'>(?:\. Got value: (.*))?$")
_NO_CLASS = re.compile(
    r"^(?:module '[^']+' has no attribute '[^']+'|No module named .*|Expected a dot import path string: .*"
    r"|Import path .* does not correspond to a subclass of .*)"
)
_FAMILIES = {
    "model": ("ssl_norms.methods", "ssl_norms.methods.base.SSLMethod"),
    "data": ("datamodules", "lightning.pytorch.LightningDataModule"),
}


def config_files(argv: Sequence[str], cwd: str | Path | None = None) -> list[Path]:
    """The files given with ``-c``/``--config`` (in order: later ones win), relative to ``cwd``.

    ``cwd`` is the directory the command ran in: jsonargparse changes into a config file's
    folder while it parses it, so relative paths must not be resolved at error time.
    """
    files = []
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            files.append(Path(args[i + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    if cwd is not None:
        files = [f if f.is_absolute() else Path(cwd) / f for f in files]
    return files


def yaml_problem(path: Path) -> str | None:
    """A message naming ``path`` when it is missing or not valid YAML, else None."""
    import yaml

    if not path.is_file():
        return f"config file {path} does not exist"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        return f"config file {path} cannot be read: {error}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        detail = f"{problem} ({context})" if context else problem
        return f"config file {path} is not valid YAML{where}: {detail}"
    if data is not None and not isinstance(data, dict):
        return f"config file {path} must hold a mapping of keys (trainer:, model:, ...), not a {type(data).__name__}"
    return None


def _lookup(data: Any, parts: list[str]) -> bool:
    if not parts:
        return True
    if not isinstance(data, dict):
        return False
    head, rest = parts[0], parts[1:]
    if head in data and _lookup(data[head], rest):
        return True
    # ``model: {lr: ...}`` is accepted as well as ``model: {init_args: {lr: ...}}``.
    return head == "init_args" and _lookup(data, rest)


def find_key_source(key: str, argv: Sequence[str], cwd: str | Path | None = None) -> str | None:
    """Where ``key`` (dotted) was set: ``"in <file>"`` (the last -c file that sets it),
    ``"on the command line"``, or None."""
    import yaml

    parts = key.split(".")
    short = [p for p in parts if p != "init_args"]
    flags = {"--" + key, "--" + ".".join(short)}
    if any(a.split("=", 1)[0] in flags for a in argv):
        return "on the command line"
    found = None
    for path in config_files(argv, cwd):
        try:
            data = yaml.safe_load(path.read_text())
        except Exception:
            continue
        if _lookup(data, parts) or _lookup(data, short):
            found = f"in {path}"
    return found


def _init_parameters(cls: type) -> list[str]:
    """Constructor arguments of ``cls``, following ``**kwargs`` into its bases."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        names += [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(names))


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def known_classes(family: str) -> list[str]:
    """The class paths a ``model``/``data`` key accepts from this package."""
    package, base_path = _FAMILIES[family]
    try:
        module = importlib.import_module(package)
        base = _import(base_path)
    except Exception:
        return []
    found = []
    for name in getattr(module, "__all__", dir(module)):
        obj = getattr(module, name, None)
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base:
            if not inspect.isabstract(obj) and not name.startswith("SSL"):
                found.append(f"{package}.{name}")
    return found


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _explain_lines(lines: list[str], parser_keys: Sequence[str]) -> tuple[str | None, str]:
    """(dotted key or None, problem) from jsonargparse's cleaned message lines."""
    key_parts: list[str] = []
    class_path: str | None = None
    for i, line in enumerate(lines):
        match = _PARSER_KEY.match(line)
        if match:
            key_parts.append(match.group(1))
            if match.group(2):
                lines.insert(i + 1, match.group(2))
            continue
        match = _CLASS_PATH.match(line)
        if match:
            class_path = match.group(1)
            key_parts.append("init_args")
            if match.group(2):
                lines.insert(i + 1, match.group(2))
            continue
        if _NO_CLASS.match(line):
            while key_parts and key_parts[-1] == "init_args":
                key_parts.pop()
            family = key_parts[0] if key_parts else ""
            given = class_path or line.rsplit(" ", 1)[-1]
            choices = known_classes(family) if family in _FAMILIES else []
            listing = f": choose one of {', '.join(choices)}" if choices else ""
            what = "method" if family == "model" else "data module" if family == "data" else "class"
            return ".".join(key_parts) or None, f"unknown {what} {given!r}{listing}"
        match = _NOT_ACCEPTED.match(line)
        if match:
            option = match.group(1) or match.group(2)
            key = ".".join([*key_parts, option])
            if class_path:
                try:
                    valid = _init_parameters(_import(class_path))
                except Exception:
                    valid = []
                name = class_path.rpartition(".")[2]
                hint = _suggest(option, valid)
                listing = f"; its options: {', '.join(valid)}" if valid and not hint else ""
                return key, f"{name} has no option {option!r}" + (
                    f" ({hint})" if hint else ""
                ) + listing
            group, _, leaf = option.rpartition(".")
            members = [
                k[len(group) + 1 :] for k in parser_keys if group and k.startswith(group + ".")
            ]
            if members:  # a known group (trainer, ...) without this option
                hint = _suggest(leaf, members)
                return key, f"{group} has no option {leaf!r}" + (f" ({hint})" if hint else "")
            hint = _suggest(option, parser_keys)
            return key, f"unknown option {option!r}" + (f" ({hint})" if hint else "")
        match = _GROUP.match(line)
        if match:
            group, option = match.groups()
            valid = [k.split(".", 1)[1] for k in parser_keys if k.startswith(group + ".")]
            hint = _suggest(option, valid)
            return f"{group}.{option}", f"{group} has no option {option!r}" + (
                f" ({hint})" if hint else ""
            )
        match = _EXPECTED.match(line)
        if match:
            expected, got = match.groups()
            if got is None:
                given = next((g for g in lines if g.startswith("Given value: ")), None)
                got = given.split(": ", 1)[1] if given else None
            problem = f"expected {expected}" + (f", got {got!r}" if got is not None else "")
            return ".".join(key_parts) or None, problem
    rest = [ln for ln in lines if not _PARSER_KEY.match(ln) and not _CLASS_PATH.match(ln)]
    return ".".join(key_parts) or None, "; ".join(rest) or "invalid value"


def explain_config_error(
    message: str,
    argv: Sequence[str],
    parser_keys: Sequence[str] = (),
    cwd: str | Path | None = None,
) -> str:
    """One clear line for a jsonargparse error ``message`` raised while parsing ``argv``.

    ``parser_keys`` are the option names the parser knows (for "did you mean"), ``cwd``
    the directory the command ran in.
    """
    for path in config_files(argv, cwd):
        problem = yaml_problem(path)
        if problem:
            return problem
    if message.startswith("unrecognized arguments:"):
        flags = [a for a in message.split(":", 1)[1].split() if a.startswith("--")]
        hints = [
            f"{flag}: {hint}"
            for flag in flags
            if (hint := _suggest(flag[2:].split("=", 1)[0], parser_keys))
        ]
        return message + (f" ({'; '.join(hints)})" if hints else "")
    # The union listing keeps its "Given value" lines until the key is known.
    key, problem = _explain_lines(_clean(message), parser_keys)
    if key is None:
        return problem
    source = find_key_source(key, argv, cwd)
    where = f" ({source})" if source else ""
    return f"{key}{where}: {problem}"


def _clean(message: str) -> list[str]:
    lines = []
    for raw in message.splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if not line:
            continue
        if line.startswith("Given value: ") or not any(p.search(line) for p in _NOISE):
            lines.append(line)
    return lines


def strip_union_listing(message: str) -> str:
    """The point of a jsonargparse instantiation error: the class's own message(s), without
    the "Does not validate against any of the Union subtypes" listing around them."""
    if "Union subtypes" not in message:
        return message
    lines = [ln for ln in _clean(message) if not ln.startswith("Given value")]
    return "; ".join(lines) or message
