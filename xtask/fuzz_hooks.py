"""Loaded by `cargo xtask fuzz` (SCHEMATHESIS_HOOKS).

The OpenAPI document states every workload rule: with JSON Schema's keywords where there is
one (patterns, propertyNames, if/then, prefixItems), and, where there is none, with these
keywords of its own, which this hook reads from the document itself:

- `x-duration-min` / `x-duration-max` (milliseconds) on a duration string;
- `x-duration-at-least` `{"field", "default", "own_default"}`: not under a sibling duration
  (the defaults count for an absent or null field);
- `x-unique-by` `{"fields", "defaults"}` on an array of objects: no two items that have those
  fields alike on them (null is the field's default; 65535.0 is 65535).

Generated bodies are moved inside those bounds, so that a schema-valid request the server
refuses is a finding. Nothing here knows a field by name: only the keywords.
"""

import math
import re

import schemathesis

DURATION_PART = re.compile(r"([0-9]+)(ns|us|ms|s|m|h)")
DURATION_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def duration_ms(text):
    return sum(float(n) * DURATION_MS[unit] for n, unit in DURATION_PART.findall(text))


def field_value(item, field, rule):
    """A field as the server reads it: null is absent (its default), 65535.0 is 65535."""
    value = item.get(field)
    if value is None:
        value = rule.get("defaults", {}).get(field)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def resolve(document, schema):
    while isinstance(schema, dict) and "$ref" in schema:
        node = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema if isinstance(schema, dict) else {}


def alternatives(document, schema):
    """The schema and every schema it combines (allOf, anyOf, oneOf), resolved."""
    schema = resolve(document, schema)
    found = [schema]
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            found.extend(alternatives(document, sub))
    return found


def bounded(document, schema, value):
    if isinstance(value, str):
        for s in alternatives(document, schema):
            # A value its own pattern refuses is not ours to move.
            if "pattern" in s and re.search(s["pattern"], value) is None:
                continue
            if "x-duration-min" in s:
                ms = duration_ms(value)
                if ms < s["x-duration-min"]:
                    value = f"{s['x-duration-min']}ms"
                elif ms > s["x-duration-max"]:
                    value = f"{s['x-duration-max']}ms"
        return value
    if isinstance(value, list):
        for s in alternatives(document, schema):
            if "items" in s:
                value = [bounded(document, s["items"], v) for v in value]
            rule = s.get("x-unique-by")
            if rule:
                seen, kept = set(), []
                for item in value:
                    if isinstance(item, dict):
                        key = tuple(field_value(item, f, rule) for f in rule["fields"])
                        # An item without one of the fields (a port the engine picks) is not compared.
                        if "None" in key:
                            kept.append(item)
                            continue
                        if key in seen:
                            continue
                        seen.add(key)
                    kept.append(item)
                value = kept
        return value
    if isinstance(value, dict):
        value = dict(value)
        for s in alternatives(document, schema):
            properties = s.get("properties", {})
            for name, sub in properties.items():
                if name in value:
                    value[name] = bounded(document, sub, value[name])
            for name, sub in properties.items():
                for alt in alternatives(document, sub):
                    rule = alt.get("x-duration-at-least")
                    own = value.get(name)
                    # A value of another type is a negative case: left as it is.
                    if not rule or not (own is None or isinstance(own, str)):
                        continue
                    other = value.get(rule["field"])
                    floor = duration_ms(other if isinstance(other, str) else rule["default"])
                    if duration_ms(own if isinstance(own, str) else rule["own_default"]) < floor:
                        value[name] = f"{math.ceil(floor)}ms"
        return value
    return value


@schemathesis.hook
def map_case(context, case):
    # Every phase (the coverage phase too) passes its cases through `map_case`. A negative
    # case is left as it was generated: it must stay invalid.
    meta = case.meta
    if meta is not None and meta.generation.mode.name == "NEGATIVE":
        return case
    operation = context.operation
    content = operation.definition.raw.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is not None and case.body is not None:
        case.body = bounded(operation.schema.raw_schema, schema, case.body)
    return case
