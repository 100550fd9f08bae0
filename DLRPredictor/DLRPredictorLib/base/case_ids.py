"""Case ids: which texts may be one, and the file name made from one.

A case id is copied verbatim into every CSV the project writes (results CSV, its journal, the
training's out-of-fold scores) and names the case's scene file. So:

- control characters (NUL, tab, line breaks, ``\\x7f``, C1 codes) and the Unicode line and
  paragraph separators are refused: they break CSV lines, terminals and file names;
- a leading ``=``, ``+``, ``-`` or ``@`` is refused: a spreadsheet opening the CSV would run the
  cell as a formula (CSV injection, OWASP). It is refused rather than written as ``'=...``
  because the results CSV must carry the exact id, to be joined back to the cohort CSV and
  matched by a resumed run.

:func:`case_file_stem` gives each id a distinct, valid file name stem on every file system.
"""

from __future__ import annotations

import hashlib
import unicodedata

#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@")
#: Longest readable part of a file stem; with the digest and ".mrb" far below 255 bytes, leaving
#: room for the temporary names the scene writer makes from the stem.
MAX_STEM_CHARS = 64
_DIGEST_CHARS = 12
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
# Windows device names: "con.mrb" cannot be created there, whatever the case.
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"] + [f"com{i}" for i in range(1, 10)] + [f"lpt{i}" for i in range(1, 10)]
)


def case_id_problem(case_id: str) -> str | None:
    """Why a text cannot be a case id, or None when it can.

    Args:
        case_id: the id as read (surrounding blanks already removed by the reader).

    Returns:
        A phrase such as ``"holds a control character (U+0000)"`` to follow the id's location.
    """
    for ch in case_id:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return f"holds a control character (U+{ord(ch):04X}); case ids are printable text"
    if case_id.startswith(FORMULA_STARTS):
        return (
            f"starts with '{case_id[0]}', which spreadsheets run as a formula when they open the "
            "results CSV; rename the case (e.g. drop or replace that first character)"
        )
    return None


def case_file_stem(case_id: str) -> str:
    """A file name stem for a case id: distinct for distinct ids, valid on every file system.

    The stem is the id itself when it is short and made of ASCII lower-case letters, digits,
    ``-``, ``_`` and ``.`` (not first). Otherwise it is the id with every other character
    replaced by ``_``, cut to :data:`MAX_STEM_CHARS`, plus ``-`` and 12 hex digits of the sha256
    of the exact id. So "a/b" and "a_b" differ, and so do "A" and "a" on a case-insensitive
    file system; no stem starts with ``.`` (hidden) or is a Windows device name.

    Args:
        case_id: the exact case id.

    Returns:
        The stem (add the extension, e.g. ``.mrb``).
    """
    readable = "".join(c if c in _SAFE else "_" for c in case_id[:MAX_STEM_CHARS])
    if readable.startswith("."):
        readable = "_" + readable[1:]
    reserved = case_id.partition(".")[0] in _RESERVED  # "con" and "con.1" alike
    if readable == case_id and case_id == case_id.lower() and not reserved:
        return case_id
    digest = hashlib.sha256(case_id.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    return f"{readable}-{digest}"
