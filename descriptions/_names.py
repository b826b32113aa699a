"""Names of the language's built-in constructors and functions, with SmartFrog's Java aliases."""

from __future__ import annotations

import functools
from typing import Final

FUNCTION_PREFIX: Final = "sd_actors.descriptions.functions."
CONSTRUCT_FUNCTION: Final = "sd_actors.descriptions.ConstructFunction"
CONSTRUCT_SCHEMA: Final = "sd_actors.descriptions.ConstructSchema"
CONSTRUCT_ASSERTIONS: Final = "sd_actors.descriptions.ConstructAssertions"

_JAVA_LANGUAGE: Final = "org.smartfrog.sfcore.languages.sf."
_JAVA_FUNCTIONS: Final = _JAVA_LANGUAGE + "functions."

CONSTRUCTORS: Final = {
    CONSTRUCT_FUNCTION: CONSTRUCT_FUNCTION,
    CONSTRUCT_SCHEMA: CONSTRUCT_SCHEMA,
    CONSTRUCT_ASSERTIONS: CONSTRUCT_ASSERTIONS,
    _JAVA_LANGUAGE + "ConstructFunction": CONSTRUCT_FUNCTION,
    _JAVA_LANGUAGE + "ConstructSchema": CONSTRUCT_SCHEMA,
    _JAVA_LANGUAGE + "ConstructAssertions": CONSTRUCT_ASSERTIONS,
}

FUNCTION_NAMES: Final = (
    "And", "Append", "CheckAssertions", "CheckSchemaElement", "Concatenate", "Date", "Divide", "EQ",
    "Format", "GE", "GT", "IfThenElse", "Implies", "LE", "LT", "Minus", "Mod", "NE", "Next", "Not",
    "Or", "Product", "Random", "Ref", "Sum", "Switch", "SystemComponent", "UserInput", "Vector", "Xor",
)


@functools.cache
def canonical_function(name: str) -> str | None:
    """The sd-actors name of a function given its sd-actors or SmartFrog (Java) class name."""
    for prefix in (FUNCTION_PREFIX, _JAVA_FUNCTIONS):
        if name.startswith(prefix) and name[len(prefix):] in FUNCTION_NAMES:
            return FUNCTION_PREFIX + name[len(prefix):]
    return None


def function(short: str) -> str:
    return FUNCTION_PREFIX + short


# SmartFrog's Java value classes, as used in schemas, mapped to sd-actors' kind names.
JAVA_VALUE_CLASSES: Final = {
    "java.lang.Integer": "Integer",
    "java.lang.Long": "Long",
    "java.lang.Float": "Float",
    "java.lang.Double": "Double",
    "java.lang.String": "String",
    "java.lang.Boolean": "Boolean",
    "java.util.Vector": "Vector",
    "org.smartfrog.sfcore.componentdescription.ComponentDescription": "CD",
    "org.smartfrog.sfcore.languages.sf.sfcomponentdescription.SFComponentDescription": "CD",
    "org.smartfrog.sfcore.common.SFNull": "Null",
    "org.smartfrog.sfcore.common.SFByteArray": "ByteArray",
    "org.smartfrog.sfcore.reference.Reference": "Reference",
    "org.smartfrog.sfcore.reference.SFReference": "Reference",
    "org.smartfrog.sfcore.languages.sf.sfreference.SFReference": "Reference",
    "org.smartfrog.sfcore.languages.sf.sfreference.SFApplyReference": "Reference",
    "org.smartfrog.sfcore.languages.sf.sfreference.SFAssertReference": "Reference",
    "java.net.InetAddress": "InetAddress",
    "java.lang.Object": "anyClass",
}
