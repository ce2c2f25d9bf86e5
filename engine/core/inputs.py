"""The one guarded entry for every file or text the lab reads: config and sweep files, a sweep pasted
on the Launch page, the comma lists of the sweep form.

What it guarantees, whatever the input (the limits are ``engine.core.limits.limits()``, set in lab.toml):
- at most ``max_input_bytes`` are read (a file is read to that size plus one byte, never whole);
- the text is UTF-8, else one line names the byte and where it is;
- YAML anchors and aliases are refused (an alias bomb of 330 bytes expands to millions of values);
- nesting deeper than ``max_yaml_depth`` or more than ``max_yaml_nodes`` values are refused on the
  parser's events, before any of the document is composed or built (``check_events``); documents
  that did not come through YAML get the same limits (``check_document``);
- an integer written with more than ``MAX_INT_CHARS`` characters is refused (Python refuses to convert
  decimal texts of more than 4,300 digits, and no field needs more than 20);
- ``1e-3`` is read as a number (YAML 1.1 reads it as text; YAML 1.2, JSON and Python as a number).
Every problem is a ``ConfigError`` of at most ``max_problems`` lines, each line quoting values with
``cut`` (never the whole value: a repr of an expanded alias once made a 32 MB message).
"""

from __future__ import annotations

import math
import re
import reprlib
from pathlib import Path
from typing import Any, Iterable

import yaml
from yaml.nodes import ScalarNode

from engine.core.limits import limits

MAX_INT_CHARS = 100        # characters of one integer in YAML (a seed needs 10)
MAX_LINE_CHARS = 600       # the last guard on one problem line: field, cut value and what is allowed
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"


class ConfigError(ValueError):
    """An input with problems; ``problems`` holds one line per problem (at most ``max_problems``,
    each on one line and bounded in length)."""

    def __init__(self, problems: Iterable[str]):
        self.problems = _bounded(list(problems))
        super().__init__("\n".join(self.problems))

    def report(self, source, what: str = "config") -> None:
        """Print the problems for a command line: a header naming the file, then one line each."""
        import sys

        print(f"{cut_text(str(source))}: the {what} has {len(self.problems)} problem(s):", file=sys.stderr)
        for line in self.problems:
            print(f"  {line}", file=sys.stderr)


def _bounded(problems: list[str]) -> list[str]:
    most = limits().max_problems
    shown = problems if len(problems) <= most else problems[:most - 1]  # and one line saying how many more
    lines = []
    for line in shown:
        line = str(line).replace("\r", "\\r").replace("\n", "\\n")
        lines.append(line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS - 1] + "…")
    if len(problems) > most:
        lines.append(f"... and {len(problems) - len(shown)} more problem(s)")
    return lines


# ---- quoting values in messages --------------------------------------------------------------------

class _ShortRepr(reprlib.Repr):
    def repr_int(self, x, level):
        digits = int((x.bit_length() - 1) * math.log10(2)) + 1
        if digits > self.maxlong:  # str() of a huge int is slow, or refused past 4,300 digits
            return f"<an integer of about {digits} digits>"
        return repr(x)


def _short_repr() -> _ShortRepr:
    n = limits().max_message_chars
    r = _ShortRepr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 3, 4, 6, 6, 6
    r.maxstring = r.maxother = r.maxlong = n
    return r


def cut(value: Any) -> str:
    """``repr(value)`` for an error line, at most ``max_message_chars`` long whatever the value
    (built from a bounded part of it: never the repr of a whole large structure)."""
    n = limits().max_message_chars
    try:
        text = _short_repr().repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still quoted
        text = f"<{type(value).__name__}>"
    return text if len(text) <= n else text[:n - 1] + "…"


def cut_text(text: str) -> str:
    """A text (a key, a file name) for an error line, unquoted, cut like ``cut``."""
    n = limits().max_message_chars
    text = str(text).replace("\n", "\\n")
    if len(text) <= n:
        return text
    # a long path keeps its end: the file's name says which file it is
    is_path = "/" in text and " " not in text
    return "…" + text[-(n - 1):] if is_path else text[:n - 1] + "…"


# ---- reading ---------------------------------------------------------------------------------------

def read_bytes(path: str | Path) -> bytes:
    """At most ``max_input_bytes`` of a file; ``ConfigError`` if it is larger or cannot be read."""
    path = Path(path)
    most = limits().max_input_bytes
    try:
        with open(path, "rb") as f:
            data = f.read(most + 1)
    except OSError as err:
        raise ConfigError([f"{cut_text(path)}: cannot be read ({err.strerror or err})"]) from None
    if len(data) > most:
        raise ConfigError([f"{cut_text(path)}: is larger than {most:,} bytes, the most the lab reads "
                           "(lab.toml [limits] max_input_bytes)"])
    return data


def decode(data: bytes | str, source: str) -> str:
    """UTF-8 text of at most ``max_input_bytes``; ``ConfigError`` naming the first bad byte and where."""
    most = limits().max_input_bytes
    if isinstance(data, str):
        if len(data) > most or len(data.encode("utf-8", "surrogatepass")) > most:
            raise ConfigError([f"{source}: is larger than {most:,} bytes, the most the lab reads "
                               "(lab.toml [limits] max_input_bytes)"])
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        before = data[:err.start]
        line = before.count(b"\n") + 1
        column = err.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError([f"{source}: byte 0x{data[err.start]:02x} at line {line}, column {column} "
                           f"(offset {err.start}) is not UTF-8: save the file as UTF-8"]) from None


def check_document(data: Any, source: str = "config") -> None:
    """The limits of the YAML guards for a document that did not come through YAML (the Launch form,
    a stored sweep, a caller): nesting, the number of values, the size of integers. Iterative, so a
    structure nested 10,000 deep is one line rather than a RecursionError."""
    lim = limits()
    most_bits = int(MAX_INT_CHARS / math.log10(2))
    stack, nodes = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > lim.max_yaml_nodes:
            raise ConfigError([f"{source}: more than {lim.max_yaml_nodes:,} values: at most {lim.max_yaml_nodes:,} "
                               "(lab.toml [limits] max_yaml_nodes)"])
        if isinstance(value, int) and value.bit_length() > most_bits:
            raise ConfigError([f"{source}: {cut(value)}: integers of at most {MAX_INT_CHARS} digits are read"])
        if isinstance(value, (dict, list, tuple, set)):
            if depth >= lim.max_yaml_depth:
                raise ConfigError([f"{source}: nested deeper than {lim.max_yaml_depth} levels: at most "
                                   f"{lim.max_yaml_depth} (lab.toml [limits] max_yaml_depth)"])
            items = [x for kv in value.items() for x in kv] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


# ---- YAML ------------------------------------------------------------------------------------------

class _Refused(Exception):
    def __init__(self, mark, path: list[str], message: str):
        self.mark, self.path, self.message = mark, "".join(
            p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(q for q in path if q)), message


class GuardedLoader(yaml.CSafeLoader):
    """libyaml's safe loader, whose events are checked (``check_events``) before it composes anything:
    no anchors or aliases, nesting at most ``max_yaml_depth``, at most ``max_yaml_nodes`` values,
    integers of at most ``MAX_INT_CHARS`` characters. libyaml parses without recursion, so 1,000
    nested brackets are one refusal, never a RecursionError; it composes recursively in C, which is
    why nothing is composed before the depth is known to be bounded."""


# YAML 1.2 floats: 1e-3, 5E4, .5e1 (YAML 1.1 reads those as text; every user expects a number)
GuardedLoader.add_implicit_resolver(
    FLOAT_TAG,
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+
                   |[-+]?\.[0-9_]+[eE][-+]?[0-9]+)$""", re.X),
    list("-+0123456789."))

_NODE_EVENTS = (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.AliasEvent)
_END_EVENTS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def check_events(text: str) -> None:
    """Walk the document's events once (nothing is built) and raise ``_Refused`` at the first one
    beyond the limits, with the path of keys that leads to it."""
    lim = limits()
    loader = GuardedLoader(text)
    stack: list[list] = []      # open collections: [is_mapping, items seen, last key]
    path: list[str] = []        # their labels, for the message
    nodes = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, _END_EVENTS):
                stack.pop()
                path.pop()
                continue
            if not isinstance(event, _NODE_EVENTS):
                continue
            nodes += 1
            label = ""
            if stack:
                parent = stack[-1]
                if not parent[0]:
                    label = f"[{parent[1]}]"
                elif parent[1] % 2 == 0:  # a key
                    parent[2] = cut_text(event.value) if isinstance(event, yaml.ScalarEvent) else "?"
                else:
                    label = parent[2]
                parent[1] += 1
            if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
                raise _Refused(event.start_mark, path + [label], "aliases (&/*) are not allowed: write the value out")
            if nodes > lim.max_yaml_nodes:
                raise _Refused(event.start_mark, path + [label], f"more than {lim.max_yaml_nodes:,} values: at most "
                               f"{lim.max_yaml_nodes:,} (lab.toml [limits] max_yaml_nodes)")
            if isinstance(event, yaml.ScalarEvent):
                if (len(event.value) > MAX_INT_CHARS and not event.style
                        and loader.resolve(ScalarNode, event.value, event.implicit) == INT_TAG):
                    raise _Refused(event.start_mark, path + [label], f"an integer of {len(event.value):,} "
                                   f"characters: at most {MAX_INT_CHARS} are read")
                continue
            if len(stack) >= lim.max_yaml_depth:
                raise _Refused(event.start_mark, path, f"nested deeper than {lim.max_yaml_depth} levels: at most "
                               f"{lim.max_yaml_depth} (lab.toml [limits] max_yaml_depth)")
            stack.append([isinstance(event, yaml.MappingStartEvent), 0, ""])
            path.append(label)
    finally:
        loader.dispose()


def load_yaml(text: str | bytes, source: str = "input") -> Any:
    """Parse one YAML document (text or UTF-8 bytes) within the limits; ``ConfigError`` with one line
    (the source, the line and column, the problem) if it cannot be read."""
    source = cut_text(source)
    text = decode(text, source)
    loader = None
    try:
        check_events(text)
        loader = GuardedLoader(text)
        return loader.get_single_data()
    except _Refused as err:
        where = f" line {err.mark.line + 1}, column {err.mark.column + 1}" if err.mark else ""
        field = f" ({err.path})" if err.path else ""
        raise ConfigError([f"{source}:{where}{field}: {err.message}"]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError([f"{source}:{where} is not valid YAML ({cut_text(problem)})"]) from None
    except RecursionError:  # the depth limit comes first; this is the last guard
        raise ConfigError([f"{source}: nested too deeply to read"]) from None
    except MemoryError:
        raise ConfigError([f"{source}: too large to read"]) from None
    except Exception as err:  # noqa: BLE001 - a constructor failing on odd input: a date out of range
        # (ValueError), an explicit !!timestamp tag on a text that is no date (AttributeError), ...
        raise ConfigError([f"{source}: a value cannot be read ({type(err).__name__}: {cut_text(err)})"]) from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content through every guard above. Config and sweep files come in through here."""
    return load_yaml(read_bytes(path), source=str(path))
