"""The JSON Schema of scenario files, and a validator for the part of JSON Schema it uses.

Role: ``schema.json`` is the single source of truth of the YAML format; this module checks a
parsed document against it and says *where* and *what was expected*, which generic validators
do not do well for YAML (they know nothing of lines). It implements exactly the keywords the
schema uses (``KEYWORDS``); ``tests/scenarios/test_load.py`` fails if the schema grows a keyword
this module would silently ignore.

Pure: values in, problems out. No I/O beyond reading the schema file once.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

SCHEMA_PATH: Final = Path(__file__).with_name("schema.json")

Path_ = tuple[str | int, ...]  # a location inside the document: keys and list indexes

# Keywords the validator applies, and annotations it knowingly ignores.
KEYWORDS: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "propertyNames",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "pattern",
        "minimum",
        "maximum",
        "minProperties",
        "oneOf",
        "anyOf",
        "$ref",
    }
)
ANNOTATIONS: Final = frozenset(
    {"$schema", "$id", "$defs", "title", "description", "x-expected", "default", "examples"}
)


@cache
def load_schema() -> dict[str, Any]:
    """The scenario schema (parsed once)."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One violation: where (a document path; ``at_key`` if the key itself is wrong) and what."""

    path: Path_
    message: str
    at_key: bool = False


def format_path(path: Path_) -> str:
    """``("given", "consumers", 0, "acks")`` -> ``given.consumers[0].acks``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def describe(value: object) -> str:
    """How a value reads in an error message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


_TYPE_NAMES: Final = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _is_type(value: object, name: str) -> bool:
    if name == "object":
        return isinstance(value, Mapping)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    raise ValueError(f"unknown JSON Schema type {name!r}")


class Validator:
    """Checks a document against a schema; ``validate`` returns every problem found."""

    def __init__(self, schema: Mapping[str, Any] | None = None) -> None:
        self.root: Mapping[str, Any] = schema if schema is not None else load_schema()

    def validate(self, value: object) -> list[SchemaProblem]:
        return self._check(self.root, value, ())

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/"):
                raise ValueError(f"only local $ref is supported, got {ref!r}")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra else target
        return schema

    def _expected(self, schema: Mapping[str, Any], fallback: str) -> str:
        text = schema.get("x-expected")
        return f"expected {text}" if isinstance(text, str) else fallback

    def _check(self, schema: Mapping[str, Any], value: object, path: Path_) -> list[SchemaProblem]:
        schema = self._resolve(schema)
        types = schema.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else list(types)
            if not any(_is_type(value, n) for n in names):
                wanted = " or ".join(_TYPE_NAMES[n] for n in names)
                return [
                    SchemaProblem(
                        path,
                        self._expected(schema, f"expected {wanted}") + f", got {describe(value)}",
                    )
                ]
        problems: list[SchemaProblem] = []
        if "const" in schema and value != schema["const"]:
            return [
                SchemaProblem(
                    path,
                    self._expected(schema, f"expected {describe(schema['const'])}")
                    + f", got {describe(value)}",
                )
            ]
        if "enum" in schema and value not in schema["enum"]:
            choices = [str(c) for c in schema["enum"]]
            hint = ""
            if isinstance(value, str):
                close = difflib.get_close_matches(value, choices, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
            fallback = "expected one of " + ", ".join(choices)
            return [
                SchemaProblem(
                    path, self._expected(schema, fallback) + f", got {describe(value)}{hint}"
                )
            ]
        if isinstance(value, str):
            problems += self._check_string(schema, value, path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                problems.append(
                    SchemaProblem(path, f"expected at least {schema['minimum']}, got {value}")
                )
            if "maximum" in schema and value > schema["maximum"]:
                problems.append(
                    SchemaProblem(path, f"expected at most {schema['maximum']}, got {value}")
                )
        if isinstance(value, Mapping):
            problems += self._check_object(schema, value, path)
        if isinstance(value, list):
            problems += self._check_array(schema, value, path)
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                problems += self._check_alternatives(schema, keyword, value, path)
        return problems

    def _check_string(
        self, schema: Mapping[str, Any], value: str, path: Path_
    ) -> list[SchemaProblem]:
        if "minLength" in schema and len(value) < schema["minLength"]:
            return [SchemaProblem(path, self._expected(schema, "expected a non-empty string"))]
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            fallback = f"expected a string matching {schema['pattern']}"
            return [SchemaProblem(path, self._expected(schema, fallback) + f", got {value!r}")]
        return []

    def _check_object(
        self, schema: Mapping[str, Any], value: Mapping[Any, Any], path: Path_
    ) -> list[SchemaProblem]:
        problems: list[SchemaProblem] = []
        properties: Mapping[str, Any] = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                problems.append(SchemaProblem(path, f"missing required key {key!r}"))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            n = schema["minProperties"]
            problems.append(SchemaProblem(path, f"expected at least {n} key{'s' if n > 1 else ''}"))
        names = schema.get("propertyNames")
        additional = schema.get("additionalProperties", True)
        for key, item in value.items():
            if names is not None:
                for p in self._check(names, key, (*path, key)):
                    problems.append(SchemaProblem(p.path, p.message, at_key=True))
            if key in properties:
                problems += self._check(properties[key], item, (*path, key))
            elif additional is False:
                known = sorted(properties)
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                where = f" in {format_path(path)}" if path else ""
                problems.append(
                    SchemaProblem(
                        (*path, key),
                        f"unknown key {key!r}{where}{hint} (expected one of: {', '.join(known)})",
                        at_key=True,
                    )
                )
            elif isinstance(additional, Mapping):
                problems += self._check(additional, item, (*path, key))
        return problems

    def _check_array(
        self, schema: Mapping[str, Any], value: list[Any], path: Path_
    ) -> list[SchemaProblem]:
        problems: list[SchemaProblem] = []
        if "minItems" in schema and len(value) < schema["minItems"]:
            n = schema["minItems"]
            problems.append(
                SchemaProblem(
                    path, f"expected at least {n} item{'s' if n > 1 else ''}, got {len(value)}"
                )
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            n = schema["maxItems"]
            problems.append(SchemaProblem(path, f"expected at most {n} items, got {len(value)}"))
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                problems += self._check(items, item, (*path, i))
        return problems

    def _check_alternatives(
        self, schema: Mapping[str, Any], keyword: str, value: object, path: Path_
    ) -> list[SchemaProblem]:
        branches: Sequence[Mapping[str, Any]] = schema[keyword]
        keyed = [b.get("required") for b in branches if set(b) == {"required"}]
        if len(keyed) == len(branches) and isinstance(value, Mapping):
            # "exactly one of these keys" (a step's action, an expectation's kind)
            names = [k[0] for k in keyed if isinstance(k, list) and len(k) == 1]
            present = [n for n in names if n in value]
            if len(present) == 1 or (present and keyword == "anyOf"):
                return []
            what = self._expected(schema, "expected one of the keys " + ", ".join(names))
            if present:
                return [SchemaProblem(path, f"{what}; got {len(present)}: {', '.join(present)}")]
            return [SchemaProblem(path, f"{what}; got none of them")]
        results = [self._check(b, value, path) for b in branches]
        passing = sum(1 for r in results if not r)
        if passing == 1 or (passing > 1 and keyword == "anyOf"):
            return []
        if passing > 1:
            return [SchemaProblem(path, self._expected(schema, "expected exactly one alternative"))]
        # No branch fits. If one branch got past the shape of the value (its problems lie deeper
        # inside), its problems are the useful ones; otherwise say what was expected here.
        depth = len(path)
        best = max(results, key=lambda r: max(len(p.path) + p.at_key for p in r))
        if max(len(p.path) + p.at_key for p in best) > depth:
            return best
        hint = ""
        if isinstance(value, str):
            words = [str(c) for b in branches for c in self._resolve(b).get("enum", ())]
            close = difflib.get_close_matches(value, words, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
        return [
            SchemaProblem(
                path,
                self._expected(schema, "expected " + keyword) + f", got {describe(value)}{hint}",
            )
        ]


def schema_keywords(schema: object) -> set[str]:
    """Every keyword used anywhere in a schema (for the completeness test)."""
    found: set[str] = set()
    if isinstance(schema, Mapping):
        for key, sub in schema.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for inner in sub.values():
                    found |= schema_keywords(inner)
            elif key in ("enum", "const", "required", "examples", "default"):
                continue
            else:
                found |= schema_keywords(sub)
    elif isinstance(schema, list):
        for item in schema:
            found |= schema_keywords(item)
    return found
