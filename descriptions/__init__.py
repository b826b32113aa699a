"""The SmartFrog description language: parse, resolve and print ``.sf`` descriptions.

Other packages import from here, never from the private modules.
"""

from sd_actors.descriptions._codec import (
    UndecodableDescription,
    UnsupportedEncodingVersion,
    decode_description,
    description_from,
    encode_description,
)
from sd_actors.descriptions._errors import (
    AssertionFailed,
    CyclicReference,
    DescriptionError,
    DescriptionSyntaxError,
    FinalAttributeOverridden,
    FunctionError,
    IncludeNotFound,
    NestingTooDeep,
    PlacementError,
    PropertyMissing,
    SchemaViolation,
    SfConfigError,
    SourceLocation,
    TypeResolutionError,
    UnresolvedReference,
    UnresolvedTBD,
    UserPhaseError,
)
from sd_actors.descriptions._model import (
    TBD,
    Apply,
    ComponentDescription,
    Double,
    Long,
    Reference,
    RefPart,
    value_kind,
    values_equal,
)
from sd_actors.descriptions._parser import library_folder
from sd_actors.descriptions._pipeline import parse_file, parse_literal, parse_root, parse_string
from sd_actors.descriptions._printer import format_value, to_json_value, to_sf

__all__ = [
    "TBD",
    "Apply",
    "AssertionFailed",
    "ComponentDescription",
    "CyclicReference",
    "DescriptionError",
    "DescriptionSyntaxError",
    "Double",
    "FinalAttributeOverridden",
    "FunctionError",
    "IncludeNotFound",
    "Long",
    "NestingTooDeep",
    "PlacementError",
    "PropertyMissing",
    "RefPart",
    "Reference",
    "SchemaViolation",
    "SfConfigError",
    "SourceLocation",
    "TypeResolutionError",
    "UndecodableDescription",
    "UnresolvedReference",
    "UnresolvedTBD",
    "UnsupportedEncodingVersion",
    "UserPhaseError",
    "decode_description",
    "description_from",
    "encode_description",
    "format_value",
    "library_folder",
    "parse_file",
    "parse_literal",
    "parse_root",
    "parse_string",
    "to_json_value",
    "to_sf",
    "value_kind",
    "values_equal",
]
