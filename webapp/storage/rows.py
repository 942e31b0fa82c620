"""Bind rows to a prepared statement at a fraction of the driver's cost, with the driver's own bytes.

Each worker binds every impression it serves to ``INSERT_IMPRESSION`` in its background thread. The driver's
``PreparedStatement.bind`` is compiled code that keeps the GIL for a whole row, 17.1 µs per 14-column row in one
``make bench-batch``: binding a half-second's few hundred rows held the worker's request thread up for
milliseconds, slower serves every IMPRESSION_WRITE_SECONDS (docs/BENCHMARKS.md, sixth round).
:class:`RowBinder` serializes the common column types itself (text, double, uuid, date, timestamp; 4.7 µs per
row in the same run) and leaves any other type, and any value of an
unexpected Python type, to the driver's serializer, so its values are the bytes ``bind`` would send;
tests/test_rows.py compares the two on a real prepared statement.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from cassandra import cqltypes
from cassandra.query import BoundStatement, PreparedStatement

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MILLISECOND = dt.timedelta(milliseconds=1)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DATE_OFFSET = 2 ** 31                      # CQL date: unsigned days with the epoch at 2^31
_pack_double = struct.Struct(">d").pack
_pack_int64 = struct.Struct(">q").pack
_pack_uint32 = struct.Struct(">I").pack

Encoder = Callable[[Any], bytes]


def _text(fallback: Encoder) -> Encoder:
    def encode(value: Any) -> bytes:
        return value.encode("utf-8") if type(value) is str else fallback(value)
    return encode


def _double(fallback: Encoder) -> Encoder:
    def encode(value: Any) -> bytes:
        return _pack_double(value) if type(value) is float else fallback(value)
    return encode


def _uuid(fallback: Encoder) -> Encoder:
    def encode(value: Any) -> bytes:
        return value.bytes if type(value) is uuid.UUID else fallback(value)
    return encode


def _date(fallback: Encoder) -> Encoder:
    def encode(value: Any) -> bytes:
        if type(value) is dt.date:
            return _pack_uint32(value.toordinal() - _EPOCH_ORDINAL + _DATE_OFFSET)
        return fallback(value)
    return encode


def _timestamp(fallback: Encoder) -> Encoder:
    """Milliseconds since the epoch; a naive datetime is UTC, as for the driver. Before the epoch the driver
    rounds toward zero, not down: those are left to it."""
    def encode(value: Any) -> bytes:
        if type(value) is dt.datetime:
            aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
            if aware >= _EPOCH:
                return _pack_int64((aware - _EPOCH) // _MILLISECOND)
        return fallback(value)
    return encode


# cqltypes class → fast encoder factory (exact classes: a subclass may serialize differently)
_FAST: dict[type, Callable[[Encoder], Encoder]] = {
    cqltypes.UTF8Type: _text, cqltypes.VarcharType: _text, cqltypes.DoubleType: _double,
    cqltypes.UUIDType: _uuid, cqltypes.TimeUUIDType: _uuid, cqltypes.SimpleDateType: _date,
    cqltypes.DateType: _timestamp, cqltypes.TimestampType: _timestamp,
}


class RowBinder:
    """Binds rows (sequences of values in the statement's column order) to one prepared statement."""

    def __init__(self, statement: PreparedStatement) -> None:
        if statement.column_encryption_policy is not None:
            raise ValueError("RowBinder does not encrypt columns: bind with the driver")
        self.statement = statement
        protocol_version = statement.protocol_version
        self._encoders: list[Encoder] = []
        for column in statement.column_metadata:
            cql_type = column.type

            def driver(value: Any, _type=cql_type) -> bytes:
                return _type.serialize(value, protocol_version)

            fast = _FAST.get(cql_type)
            self._encoders.append(fast(driver) if fast is not None else driver)

    def bind(self, row: Sequence[Any]) -> BoundStatement:
        """A BoundStatement with the values ``self.statement.bind(row)`` would give (None stays null)."""
        if len(row) != len(self._encoders):
            raise ValueError(f"{len(row)} values for {len(self._encoders)} columns")
        bound = BoundStatement(self.statement)
        bound.raw_values = row
        bound.values = [None if value is None else encode(value) for encode, value in zip(self._encoders, row)]
        return bound
