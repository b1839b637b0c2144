"""Which characters a text field may hold: the one rule, for every command.

Whatever the write side accepts must be storable by every read model on every
store. PostgreSQL ``text`` cannot hold U+0000, and no UTF-8 store (nor the event
store, which encodes events as UTF-8 JSON) can hold a surrogate code point
(U+D800-U+DFFF), which JSON can nevertheless carry as a lone ``"\\ud800"``.
Beyond storage, control characters are invisible yet make two names differ,
break log lines, CSV exports and terminals, so they are refused too:

- **every text field** refuses the control characters (Unicode category Cc:
  U+0000-U+001F, U+007F-U+009F), every surrogate code point (category Cs) and
  the 66 noncharacters (U+FDD0-U+FDEF and the last two code points of every
  plane, U+FFFE, U+FFFF, U+1FFFE...), which are for a program's internal use,
  not for data exchanged with others (XML 1.0 forbids U+FFFE and U+FFFF);
- **free text** (``check_text``: descriptions, a suspension reason, metadata
  values) may hold tab, line feed and carriage return; **one-line text**
  (``check_line``: names, metadata keys) may not.

Identifiers (account codes, external ids, tenant names) have their own,
stricter ASCII syntax, which already excludes all of these. Everything else,
including format characters, private-use and unassigned code points, is
accepted and stored as given. docs/input-rules.md explains the choice.
"""

from __future__ import annotations

import re
from typing import Any

from domain.errors import InvalidText

# Noncharacters: U+FDD0-U+FDEF, and U+xFFFE/U+xFFFF in each of the 17 planes.
_NONCHARACTERS = r"\ufdd0-\ufdef" + "".join(f"\\U{plane * 0x10000 + 0xFFFE:08x}\\U{plane * 0x10000 + 0xFFFF:08x}"
                                              for plane in range(17))
_REFUSED_IN_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff" + _NONCHARACTERS + "]")
_REFUSED_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff" + _NONCHARACTERS + "]")


def check_line(value: str, field: str) -> str:
    """``value`` if it is one line of acceptable text; else ``InvalidText`` naming ``field``."""
    return _check(value, field, _REFUSED_IN_LINE)


def check_text(value: str, field: str) -> str:
    """``value`` if it is acceptable free text (tab, LF and CR allowed); else ``InvalidText``."""
    return _check(value, field, _REFUSED_IN_TEXT)


def is_clean_line(value: Any) -> bool:
    return isinstance(value, str) and _REFUSED_IN_LINE.search(value) is None


def quoted(value: Any, limit: int = 80) -> str:
    """A rejected value as an error's details may show it: clean one-line text as it is, other
    text as its escaped ``repr`` (a problem document must never carry an unencodable string)."""
    if not isinstance(value, str) or is_clean_line(value):
        return str(value)[:limit]
    return ascii(value)[:limit]


def _check(value: str, field: str, refused: re.Pattern[str]) -> str:
    assert isinstance(value, str), "callers check the type first"
    found = refused.search(value)
    if found is None:
        return value
    code_point = ord(found.group())
    raise InvalidText(
        f"{field} may not contain U+{code_point:04X} ({_kind_of(code_point)}) at character {found.start() + 1}",
        field=field, character=f"U+{code_point:04X}", position=found.start() + 1,
    )


def _kind_of(code_point: int) -> str:
    if 0xD800 <= code_point <= 0xDFFF:
        return "a surrogate code point, which UTF-8 cannot encode"
    if code_point in (0x09, 0x0A, 0x0D):
        return "a tab or line break, allowed only in free text such as a description"
    if code_point < 0x20 or 0x7F <= code_point <= 0x9F:
        return "a control character"
    return "a noncharacter"
