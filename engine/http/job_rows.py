"""A bulk job's result file as records: CSV (or CSV in a ZIP) read row by row, bounded, shaped like a JSON read.

A ZIP is checked before a byte is inflated (member count, declared size) and counted while it inflates (a member
that lies about its size is cut off), so a small download cannot become gigabytes on disk or in memory.

Rows become records the way the entity's JSON read gives them, so that a record read in bulk hashes the same as
when read from the list and an unchanged record stays unchanged: the header names the fields (`rows.columns`
renames a column, e.g. a lookup column that holds an id), a dotted name nests (`Vendor.id` -> {"Vendor": {"id":
..}}; an object whose values are all null is null, as an empty lookup is in JSON), an empty value is null, and a
value takes its declared field type (`fields` of the entity: integer, number, boolean; other types stay text).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator, Mapping
from typing import IO, Any

from ml_connector.config.entity import FieldDeclConfig, JobRowsConfig

_INTEGER = re.compile(r"[+-]?\d+")
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


class BadFile(Exception):
    """The file is not what the spec says (the message says how); the read fails, never "no records"."""


class _Bounded(io.RawIOBase):
    """A member's bytes as it inflates, refused past ``limit`` whatever its header declared."""

    def __init__(self, source: IO[bytes], limit: int, name: str) -> None:
        self.source, self.limit, self.name, self.size = source, limit, name, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        self.size += len(data)
        if self.size > self.limit:
            raise BadFile(f"ZIP member {self.name!r} is larger than {self.limit} bytes uncompressed "
                          "(read.bulk.download.max_bytes)")
        buffer[:len(data)] = data
        return len(data)


def csv_text(file: IO[bytes], fmt: str, member: str | None, *, max_bytes: int, max_members: int) -> IO[str]:
    """The CSV text of a downloaded file: the file itself, or one member of a ZIP (named, else the only one)."""
    if fmt == "csv":
        return io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile as exc:
        raise BadFile(f"the download is not a ZIP ({exc})") from None
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > max_members:
        raise BadFile(f"the ZIP holds {len(infos)} members, more than {max_members} (read.bulk.download.max_members)")
    if member is not None:
        found = [i for i in infos if i.filename == member]
        if not found:
            names = ", ".join(sorted(i.filename for i in infos)) or "none"
            raise BadFile(f"the ZIP has no member {member!r} (it has {names})")
        info = found[0]
    elif len(infos) == 1:
        info = infos[0]
    else:
        raise BadFile(f"the ZIP holds {len(infos)} members; name one in read.bulk.download.member")
    if info.file_size > max_bytes:
        raise BadFile(f"ZIP member {info.filename!r} is larger than {max_bytes} bytes uncompressed "
                      "(read.bulk.download.max_bytes)")
    raw = _Bounded(archive.open(info), max_bytes, info.filename)
    return io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8-sig", newline="")


def csv_rows(text: IO[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row by header name), one at a time; a row wider than the header is an error (a shorter one is
    padded with empty values)."""
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        for row in reader:
            if not row:
                continue
            if len(row) > len(header):
                raise BadFile(f"row {reader.line_num} has {len(row)} values for {len(header)} columns")
            yield reader.line_num, dict(zip(header, row + [""] * (len(header) - len(row)), strict=True))
    except (csv.Error, UnicodeDecodeError, zipfile.BadZipFile, EOFError) as exc:
        raise BadFile(f"the file cannot be read as CSV ({exc})") from None


class RowShaper:
    """Turns a CSV row into a record (see the module docstring)."""

    def __init__(self, config: JobRowsConfig, fields: Mapping[str, FieldDeclConfig] | None) -> None:
        self.columns = config.columns
        self.nest = config.nest
        self.empty_is_null = config.empty == "null"
        self.null_text = config.null_text
        self.fields = fields or {}
        self._plan: list[tuple[str, tuple[str, ...], FieldDeclConfig | None]] | None = None

    def shape(self, row: Mapping[str, str], line: int) -> dict[str, Any]:
        if self._plan is None:
            self._plan = self._make_plan(list(row))
        record: dict[str, Any] = {}
        for column, path, decl in self._plan:
            value = row[column]
            parent = record
            for part in path[:-1]:
                parent = parent.setdefault(part, {})
            parent[path[-1]] = self._value(value, decl, ".".join(path), line)
        return _collapse(record) if self.nest else record

    def _make_plan(self, header: list[str]) -> list[tuple[str, tuple[str, ...], FieldDeclConfig | None]]:
        """Per column: where its value goes, and its declared field (checked once, on the header)."""
        plan = []
        values: set[tuple[str, ...]] = set()
        for column in header:
            name = self.columns.get(column, column)
            path = tuple(name.split(".")) if self.nest else (name,)
            plan.append((column, path, self._declared(path)))
            values.add(path)
        for column, path, _ in plan:
            for end in range(1, len(path)):
                if path[:end] in values:
                    raise BadFile(f"column {column!r} nests under {'.'.join(path[:end])!r}, which is a value "
                                  "(rename one in read.bulk.rows.columns)")
        return plan

    def _declared(self, path: tuple[str, ...]) -> FieldDeclConfig | None:
        fields: Mapping[str, FieldDeclConfig] | None = self.fields
        decl = None
        for part in path:
            decl = fields.get(part) if fields else None
            if decl is None:
                return None
            fields = decl.fields
        return decl

    def _value(self, text: str, decl: FieldDeclConfig | None, name: str, line: int) -> Any:
        if text == "":
            return None if self.empty_is_null else ""
        if text == self.null_text:
            return None
        kind = decl.type if decl is not None else "string"
        try:
            if kind == "integer":
                return int(text)
            if kind == "number":
                return int(text) if _INTEGER.fullmatch(text) else float(text)
            if kind == "boolean":
                lowered = text.strip().lower()
                if lowered in _TRUE or lowered in _FALSE:
                    return lowered in _TRUE
                raise ValueError(text)
        except ValueError:
            article = "an" if kind == "integer" else "a"
            raise BadFile(f"row {line}: {name} {text!r} is not {article} {kind}") from None
        return text


def _collapse(record: dict[str, Any]) -> dict[str, Any]:
    """Nested objects whose every value is null become null: an empty lookup reads as null in JSON, not as
    {"id": null}."""
    for name, value in record.items():
        if isinstance(value, dict):
            value = _collapse(value)
            record[name] = None if all(v is None for v in value.values()) else value
    return record
