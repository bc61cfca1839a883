"""The training activities' contract, shared with the TypeScript workflows: contract.schema.json is
generated from lib/training/contract.ts (`npm run gen:contract`) and every activity input and
output is validated against it here, so a field one side sends and the other does not know, or a
result the workflows could not read, fails at once with the field's path in the message."""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Dict

from jsonschema import Draft202012Validator

SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "contract.schema.json")


class ContractError(ValueError):
    """A payload that does not match the contract; its message lists every mismatch."""


@functools.lru_cache(maxsize=None)
def _validator(name: str) -> Draft202012Validator:
    with open(SCHEMA_FILE) as f:
        schema = json.load(f)
    if name not in schema["$defs"]:
        raise KeyError(f"{name} is not in {SCHEMA_FILE}")
    return Draft202012Validator(schema["$defs"][name])


def check(name: str, payload: Dict[str, Any]) -> Dict[str, Any]:
    """Returns the payload when it matches contract definition `name`; raises ContractError if not."""
    errors = sorted(_validator(name).iter_errors(payload), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors)
        raise ContractError(f"{name} does not match the contract: {problems}")
    return payload
