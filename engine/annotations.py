"""What a user writes on a run (its name, notes and tags), checked as hostile input where it enters:
``annotate_run`` is the one way the pages change them (the store itself keeps only a bound of its own).

Each check returns the value to store or raises ``AnnotationError`` with one line: the field, the value
(cut short) and what is allowed. The limits are ``engine.core.limits.limits()`` (``[limits]`` in lab.toml).
- name: 1 to ``max_run_name_chars`` characters after trimming surrounding spaces; no control, format or
  unassigned characters (Unicode category C: tabs, line breaks, bidi overrides, zero-width joiners).
- notes: up to ``max_notes_chars`` characters; line breaks and tabs allowed, other C characters not.
- tags: at most ``max_tags``, each 1 to ``max_tag_chars`` letters, digits or ``_ . - : + /``, starting with
  a letter, digit or ``_``; duplicates are dropped (the first spelling is kept).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

from engine.core.inputs import cut
from engine.core.limits import limits

TAG = re.compile(r"\w[\w.:+/-]*")  # \w: Unicode letters and digits, and _


class AnnotationError(ValueError):
    """A name, notes or tags refused; the message is one line."""


def _bad_char(text: str, allowed: str = "") -> str | None:
    for ch in text:
        if ch not in allowed and (unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")):
            return f"U+{ord(ch):04X}"
    return None


def _need_text(field: str, value) -> str:
    if not isinstance(value, str):
        raise AnnotationError(f"{field} = {cut(value)}: must be text")
    return value


def check_name(value) -> str:
    name = _need_text("name", value).strip()
    most = limits().max_run_name_chars
    if not name:
        raise AnnotationError(f"name = {cut(value)}: must not be empty (1 to {most} characters)")
    if len(name) > most:
        raise AnnotationError(f"name = {cut(name)}: has {len(name)} characters, at most {most} are allowed")
    bad = _bad_char(name)
    if bad:
        raise AnnotationError(f"name = {cut(name)}: has the control character {bad}; a name is one line of "
                              "printable characters")
    return name


def check_notes(value) -> str | None:
    """The notes to store; None for empty notes."""
    notes = _need_text("notes", "" if value is None else value)
    most = limits().max_notes_chars
    if len(notes) > most:
        raise AnnotationError(f"notes: have {len(notes)} characters, at most {most} are allowed")
    bad = _bad_char(notes, allowed="\n\t")
    if bad:
        raise AnnotationError(f"notes = {cut(notes)}: have the control character {bad}; only line breaks and "
                              "tabs are allowed")
    return notes if notes.strip() else None


def parse_tags(text) -> list[str]:
    """Tags typed as one line, separated by commas: each checked (``check_tags``)."""
    text = _need_text("tags", "" if text is None else text)
    lim = limits()
    most = lim.max_tags * (lim.max_tag_chars + 3)  # every tag at its longest, with ", " between
    if len(text) > most:
        raise AnnotationError(f"tags: {len(text)} characters typed, at most {most} are allowed "
                              f"({lim.max_tags} tags of up to {lim.max_tag_chars} characters)")
    return check_tags(t.strip() for t in text.split(",") if t.strip())


def check_tags(tags: Iterable) -> list[str]:
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise AnnotationError(f"tags = {cut(tags)}: must be a list of tags")
    lim = limits()
    out: list[str] = []
    for tag in tags:
        tag = _need_text("tags", tag)
        if len(tag) > lim.max_tag_chars:
            raise AnnotationError(f"tag {cut(tag)}: has {len(tag)} characters, at most {lim.max_tag_chars} "
                                  "are allowed")
        if not TAG.fullmatch(tag):
            raise AnnotationError(f"tag {cut(tag)}: may have only letters, digits and _ . - : + / (starting with "
                                  "a letter, digit or _), no spaces; separate tags with commas")
        if tag not in out:
            out.append(tag)
        if len(out) > lim.max_tags:  # stop at once: a hostile list may be endless
            raise AnnotationError(f"tags: more than {lim.max_tags} given, at most {lim.max_tags} are allowed "
                                  "on a run")
    return out


def annotate_run(store, run_id: int, *, name: str | None = None, notes: str | None = None,
                 tags: list[str] | None = None, principal=None) -> bool:
    """Rename a run, or set its notes or tags (the fields given; notes "" clears them). Who may is
    checked first (``AccessDenied``), then every value (``AnnotationError``, one line), then all are
    written in one statement with its audit row (``Store.annotate_run``): a refused value writes nothing.
    False if there is no such run."""
    who = store.authorize(principal, "annotate", run_id=run_id)
    return store.annotate_run(run_id, name=None if name is None else check_name(name),
                              notes=None if notes is None else check_notes(notes) or "",  # "": cleared
                              tags=None if tags is None else check_tags(tags), principal=who)
