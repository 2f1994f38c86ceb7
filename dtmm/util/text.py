"""Text from untrusted files, made safe to show: in generated code and on a terminal.

Names in a ``.tflite`` file (tensor names, op names in dtmm's metadata) are chosen by
whoever wrote the file. dtmm never uses them as identifiers (those are made by dtmm:
``L3_conv2d_w``); where a name is *shown* - in a C, linker-script or Makefile comment, a C
string, a report table - it goes through :func:`safe_name` first, the one sanitizer of
the code generator. Messages printed to a terminal go through :func:`terminal_safe`.

Example:
    >>> safe_name('conv1 */ system("rm -rf ~"); /*')
    'conv1 _/ system(_rm -rf ~_); /_'
    >>> safe_name("a//b??=c#d\\\\e\\nf")
    'a/b__=c_d_e_f'
    >>> terminal_safe("bad \\x1b[31mred\\x1b[0m name\\x07")
    'bad red name'
"""
from __future__ import annotations

import re

__all__ = ["safe_name", "terminal_safe", "SAFE_NAME_CHARS", "SAFE_NAME_MAX"]

#: Characters :func:`safe_name` keeps; everything else becomes ``_``. No ``*`` (so no
#: ``/*`` or ``*/``), no ``#``, ``\\``, quotes, ``?`` (trigraphs), ``$`` or backquote
#: (Makefiles), no control or non-ASCII characters.
SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                            " _-.,:;@()[]{}<>=+!%&|~^/")
#: Longest name :func:`safe_name` returns (longer ones are cut and end in ``...``).
SAFE_NAME_MAX = 64


def safe_name(name: object, limit: int = SAFE_NAME_MAX) -> str:
    """``name`` reduced to a printable ASCII subset safe inside C / Makefile / linker-script
    comments and C strings: at most ``limit`` characters, no comment delimiters (``/*``,
    ``*/``, ``//``), no newline, NUL, backslash, ``#``, quote, ``??`` or non-ASCII.

    >>> safe_name("layer1/conv")
    'layer1/conv'
    >>> safe_name("x" * 100)[-5:], len(safe_name("x" * 100))
    ('xx...', 64)
    >>> safe_name(""), safe_name(None)
    ('', '')
    """
    if name is None:
        return ""
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).decode("utf-8", "replace")
    s = "".join(c if c in SAFE_NAME_CHARS else "_" for c in str(name))
    s = re.sub(r"/{2,}", "/", s)          # no "//" line comments
    limit = max(4, int(limit))
    if len(s) > limit:
        s = s[:limit - 3].rstrip("/") + "..."
    return s


# ESC-introduced sequences (CSI, OSC, ...), then any other C0/C1 control except \n and
# \t, DEL, and the bidirectional overrides that can make text display reordered.
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: object) -> str:
    """``text`` without terminal control sequences or control characters (newlines and
    tabs are kept), for anything printed that may echo bytes from a file.

    >>> terminal_safe("a\\x1b]0;title\\x07b\\u202ec\\n")
    'abc\\n'
    """
    s = str(text)
    s = _ANSI.sub("", s)
    return _CONTROL.sub("", s)
