"""``${VAR}`` and ``${VAR:-default}`` in string values, expanded from the environment after
parsing (a variable cannot inject YAML); ``$$`` is a literal ``$``."""

from __future__ import annotations

import re
from collections.abc import Mapping

from walship.config.keys import Loc, dotted
from walship.errors import ConfigError

_REF = re.compile(r"\$\$|\$\{([^}]*)\}")
_VAR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _expand_text(text: str, loc: Loc, source: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        ref = _VAR.fullmatch(m.group(1))
        if ref is None:
            raise ConfigError(
                f"{source}: {dotted(loc)}: {m.group(0)!r} is not a valid reference, expected "
                "${NAME} or ${NAME:-default}"
            )
        name, default = ref.group(1), ref.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    f"{source}: {dotted(loc)}: environment variable {name} is not set "
                    f"(write ${{{name}:-default}} to give a default)"
                )
            return default
        return value

    return _REF.sub(sub, text)


def expand(
    node: object, loc: Loc, source: str, env: Mapping[str, str], refs: dict[Loc, str]
) -> object:
    """Expand ``${...}`` in every string value; record in ``refs`` where it happened."""
    if isinstance(node, dict):
        return {k: expand(v, (*loc, str(k)), source, env, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [expand(v, (*loc, i), source, env, refs) for i, v in enumerate(node)]
    if isinstance(node, str) and "$" in node:
        expanded = _expand_text(node, loc, source, env)
        if expanded != node:
            refs[loc] = node
        return expanded
    return node
