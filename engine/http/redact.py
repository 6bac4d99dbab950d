"""Keeps secrets out of messages: every secret and token value in use is replaced by ``***``."""

from __future__ import annotations

import threading


class Redactor:
    """A set of sensitive strings and a function that masks them in text."""

    MIN_LENGTH = 6

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        if value and len(value) >= self.MIN_LENGTH:
            with self._lock:
                self._values.add(value)

    def __call__(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, "***")
        return text


REDACTOR = Redactor()
