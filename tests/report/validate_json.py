#!/usr/bin/python3
"""Validates JSON documents against a medscreen schema (JSON Schema draft 2020-12).

Usage: validate_json.py SCHEMA DOC [DOC ...]
Each DOC is a file holding one JSON document (a trailing newline is fine). Besides the
schema, checks that the document's "schema" field names the schema's identifier and that
the file is a single line of UTF-8, as medscreen writes it.
Exit: 0 all valid, 1 a document is invalid, 2 usage error, 77 python3-jsonschema missing
(ctest's skip code)."""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("validate_json: python3-jsonschema is not installed; skipping", file=sys.stderr)
    sys.exit(77)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    want_id = schema["properties"]["schema"]["const"]
    bad = 0
    for path in argv[2:]:
        with open(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            print(f"{path}: not UTF-8: {e}")
            bad += 1
            continue
        if "\n" in text.rstrip("\n"):
            print(f"{path}: more than one line")
            bad += 1
        try:
            doc = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as e:
            print(f"{path}: not JSON: {e}")
            bad += 1
            continue
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            print(f"{path}: {where}: {e.message}")
        if errors:
            bad += 1
        elif doc.get("schema") != want_id:
            print(f"{path}: schema {doc.get('schema')!r}, expected {want_id!r}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
