"""Keeps secrets out of messages: every secret and token value in use is replaced by ``***``.

A secret rarely shows up only as itself: an API that echoes a request shows it URL-encoded (a form body, a query
string), JSON-escaped (an error body quoted in a message) or inside base64 (HTTP basic auth). Each secret is
therefore matched in any mix of those encodings, and a credential pair is also registered as its base64.
"""

from __future__ import annotations

import base64
import re
import threading

_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
                 "\f": "\\f"}


def _char(char: str) -> str:
    """A pattern for one character: as itself, percent-encoded (either hex case), `+` for a space, JSON-escaped."""
    forms = [re.escape(char), "".join(f"%(?i:{byte:02x})" for byte in char.encode())]
    if char == " ":
        forms.append(r"\+")
    if char in _JSON_ESCAPES:
        forms.append(re.escape(_JSON_ESCAPES[char]))
    if ord(char) < 0x10000:
        forms.append(rf"\\u(?i:{ord(char):04x})")
    return "(?:" + "|".join(forms) + ")"


class Redactor:
    """A set of sensitive strings and a function that masks them, in any of their encodings, in text."""

    MIN_LENGTH = 6

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        if value and len(value) >= self.MIN_LENGTH:
            with self._lock:
                if value not in self._values:
                    self._values.add(value)
                    self._pattern = None

    def add_pair(self, user: str, password: str) -> None:
        """A ``user:password`` pair as HTTP basic auth sends it: base64, standard and URL-safe, padded or not."""
        pair = f"{user}:{password}".encode()
        for encoded in (base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()):
            self.add(encoded)
            self.add(encoded.rstrip("="))

    def __call__(self, text: str) -> str:
        with self._lock:
            if self._pattern is None and self._values:  # longest first: a secret containing another is whole
                values = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join("".join(_char(c) for c in value) for value in values))
            pattern = self._pattern
        return pattern.sub("***", text) if pattern is not None else text


REDACTOR = Redactor()
