"""Salesforce record ids: 3-char key prefix, 12 more case-sensitive chars, then the 3-char checksum suffix.

The 15 characters after the prefix count up in ASCII order (``0-9A-Za-z``) with a fixed width, so string order
is creation order: the Id index is a plain sorted list of strings.
"""

from __future__ import annotations

import re

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
ID_18 = re.compile(r"^[0-9A-Za-z]{18}$")
ID_15 = re.compile(r"^[0-9A-Za-z]{15}$")


def checksum(id15: str) -> str:
    """The 3 suffix chars: bit i of each 5-char chunk is set when char i is upper case (facts §2.3)."""
    out = ""
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(id15[chunk * 5:chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        out += _SUFFIX[bits]
    return out


def make_id(prefix: str, counter: int, pod: str = "5g0") -> str:
    """The 18-char id number ``counter`` of an object (prefix ``001`` ...), pod chars ``5g0`` like a real org."""
    body = ""
    n = counter
    for _ in range(9):
        body = _DIGITS[n % 62] + body
        n //= 62
    id15 = prefix + pod + body
    return id15 + checksum(id15)


def to18(value: str) -> str | None:
    """The 18-char form of a 15- or 18-char id (None when it is not an id at all or its suffix is wrong)."""
    if ID_15.match(value):
        return value + checksum(value)
    if ID_18.match(value) and checksum(value[:15]) == value[15:].upper():
        return value[:15] + checksum(value[:15])
    return None
