"""Versioned table schemas: the YAML format shared by transform (mapping) and loader (DDL).

A schema maps fields of raw JSON events (by path, nested keys with dots, array items with [i])
to typed, Redshift-compatible columns.

Documents are read without alias expansion: an ``*alias`` is refused with its line, so a few hundred bytes cannot
expand to millions of nodes (the "billion laughs") each time a schema is read.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

SQL_TYPE_PATTERN = re.compile(
    r"^(varchar\(\d{1,5}\)|char\(\d{1,4}\)|smallint|integer|bigint|real|double precision|boolean|timestamp|date"
    r"|decimal\(\d{1,2},\s*\d{1,2}\))$"
)
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,126}$")
# Versions are stored in INTEGER columns (32-bit on Postgres).
MAX_VERSION = 2**31 - 1
# One step of a source path: a key (anything but '.' and '['), then any number of [index] suffixes.
_PATH_STEP = re.compile(r"^([^.\[\]]+)((?:\[\d+\])*)$")
_INDEX = re.compile(r"\[(\d+)\]")
STRING_TRANSFORMS = {"lower", "upper"}
EPOCH_TRANSFORMS = {"epoch_seconds_to_timestamp", "epoch_millis_to_timestamp"}
Transform = Literal["epoch_seconds_to_timestamp", "epoch_millis_to_timestamp", "iso_to_timestamp", "lower", "upper"]


class SchemaError(ValueError):
    """A schema document is invalid; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None, field: str | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.message = message
        self.line = line
        self.field = field


def parse_source_path(path: str) -> list[str | int]:
    """Split a JSON source path ('a.b', 'items[0].id') into keys (str) and array indexes (int)."""
    steps: list[str | int] = []
    if not path or path.strip() != path:
        raise ValueError(f"invalid source path {path!r}")
    for part in path.split("."):
        match = _PATH_STEP.match(part)
        if not match:
            raise ValueError(f"invalid source path {path!r}: bad step {part!r} (use a.b.c or items[0].id)")
        steps.append(match.group(1))
        steps.extend(int(index) for index in _INDEX.findall(match.group(2)))
    return steps


def type_kind(sql_type: str) -> str:
    """Return the value kind of a normalised SQL type: string, int, float, decimal, bool, timestamp or date."""
    if sql_type.startswith(("varchar", "char")):
        return "string"
    if sql_type in ("smallint", "integer", "bigint"):
        return "int"
    if sql_type in ("real", "double precision"):
        return "float"
    if sql_type.startswith("decimal"):
        return "decimal"
    return {"boolean": "bool", "timestamp": "timestamp", "date": "date"}[sql_type]


class Column(BaseModel):
    """One output column: where it comes from in the JSON and its SQL type."""

    name: str
    source: str = Field(description="JSON path: 'a.b.c', 'items[0].id'; defaults to the column name")
    type: str
    nullable: bool = True
    default: Any | None = None
    transform: Transform | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_source(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("source") and data.get("name"):
            data = {**data, "source": data["name"]}
        return data

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("column names are lower-case letters, digits and _, starting with a letter or _")
        return value

    @field_validator("type")
    @classmethod
    def _valid_type(cls, value: str) -> str:
        normalised = " ".join(value.lower().split())
        if not SQL_TYPE_PATTERN.match(normalised):
            raise ValueError(f"unsupported SQL type {value!r}")
        return normalised

    @field_validator("source")
    @classmethod
    def _valid_source(cls, value: str) -> str:
        parse_source_path(value)
        return value

    @model_validator(mode="after")
    def _transform_fits_type(self) -> Column:
        kind = type_kind(self.type)
        if self.transform in STRING_TRANSFORMS and kind != "string":
            raise ValueError(f"transform {self.transform} applies to varchar/char columns, not {self.type}")
        if self.transform is not None and self.transform not in STRING_TRANSFORMS and kind not in ("timestamp", "date"):
            raise ValueError(f"transform {self.transform} produces a timestamp; the column type is {self.type}")
        return self

    @property
    def kind(self) -> str:
        """Return the value kind of this column's type (see ``type_kind``)."""
        return type_kind(self.type)

    @property
    def path(self) -> list[str | int]:
        """Return the parsed source path."""
        return parse_source_path(self.source)

    @property
    def varchar_length(self) -> int | None:
        """Return n for varchar(n)/char(n), else None."""
        match = re.match(r"^(?:var)?char\((\d+)\)$", self.type)
        return int(match.group(1)) if match else None


class TableSchema(BaseModel):
    """A table's schema at one version."""

    name: str
    version: int = Field(ge=1, le=MAX_VERSION)
    description: str = ""
    columns: list[Column] = Field(min_length=1)
    partition_column: str | None = None
    sort_key: list[str] = Field(default_factory=list)
    dist_key: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("table names are lower-case letters, digits and _")
        return value

    @model_validator(mode="after")
    def _keys_name_columns(self) -> TableSchema:
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate columns: {', '.join(duplicates)}")
        for key in [*self.sort_key, *(k for k in (self.dist_key, self.partition_column) if k)]:
            if key not in names:
                raise ValueError(f"key column {key!r} is not a column")
        return self

    def column(self, name: str) -> Column:
        """Return the column called ``name``."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def to_yaml(self) -> str:
        """Serialise to the YAML format."""
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=False), sort_keys=False)


def _line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """Find the 1-based line of the YAML node at ``path`` (pydantic error location)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                return line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, refusing aliases: nodes are never shared, so the document is as big as its text."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SchemaError(f"YAML aliases are not allowed in a schema (*{event.anchor})", event.start_mark.line + 1)
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


def _load(text: str) -> tuple[yaml.Node | None, Any]:
    loader = _NoAliasLoader(text)
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


def parse_schema_yaml(text: str) -> TableSchema:
    """Parse and validate a schema document; raise SchemaError naming the line and the reason."""
    try:
        root, data = _load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SchemaError(f"not valid YAML: {getattr(exc, 'problem', exc)}", mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict):
        raise SchemaError("a schema is a mapping with name, version and columns", 1)
    try:
        return TableSchema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc) or "schema"
        raise SchemaError(f"{field}: {first['msg']}", _line_of(root, loc), field) from exc
