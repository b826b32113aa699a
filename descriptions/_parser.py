"""The SmartFrog notation → a raw description tree (includes spliced, operators as function CDs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sd_actors.descriptions import _names
from sd_actors.descriptions._errors import (
    DescriptionError,
    DescriptionSyntaxError,
    IncludeNotFound,
    NestingTooDeep,
    SourceLocation,
)
from sd_actors.descriptions._lexer import SourceText, Token, tokenize
from sd_actors.descriptions._model import (
    ATTRIB,
    HERE,
    NAMED_PART_KINDS,
    NO_DEFAULT,
    PARENT,
    PROCESS,
    ROOT,
    TBD,
    THIS,
    Apply,
    ComponentDescription,
    PlacementSlot,
    Reference,
    RefPart,
)

MAX_NESTING: Final = 100
MAX_INCLUDE_DEPTH: Final = 50

NARY_OPERATORS: Final = {
    "+": "Sum", "*": "Product", "++": "Concatenate", "<>": "Append",
    "&&": "And", "||": "Or", "x|": "Xor", "->": "Implies",
}
BINARY_OPERATORS: Final = {
    "==": "EQ", "!=": "NE", ">=": "GE", "<=": "LE", ">": "GT", "<": "LT",
    "-": "Minus", "/": "Divide", "%": "Mod",
}
_REFERENCE_STARTS: Final = frozenset({"word", "ROOT", "PARENT", "THIS", "PROCESS"} | NAMED_PART_KINDS)
_VALUE_STARTS: Final = _REFERENCE_STARTS | {
    "LAZY", "OPTIONAL", "APPLY", "ASSERT", "NULL", "string", "number", "true", "false", "bytes",
    "[|", "DATA", "TBD", "[", "(", "IF", "SWITCH", "VAR",
}


def library_folder() -> Path:
    """The component library shipped with sd-actors (``org/smartfrog/components.sf``, …)."""
    # Beside this module (importlib.resources would say the same for a package on disk, and cost
    # the command line 4 ms of imports).
    return Path(__file__).parent / "library"


@dataclass
class ParseContext:
    """What one parse shares between a file and the files it includes."""

    include_dirs: Sequence[Path] = ()
    use_library: bool = True
    unique_counter: int = 0
    placements: int = 0
    include_stack: list[Path] = field(default_factory=list)
    token_cache: dict[Path, tuple[SourceText, list[Token]]] = field(default_factory=dict)

    def unique_name(self) -> str:
        name = f"unique{self.unique_counter}"
        self.unique_counter += 1
        return name

    def find_include(self, name: str, including_folder: Path | None) -> Path | None:
        candidate = Path(name)
        if candidate.is_absolute() and candidate.is_file():
            return candidate
        relative = name.lstrip("/")
        folders: list[Path] = [including_folder] if including_folder is not None else [Path.cwd()]
        folders.extend(self.include_dirs)
        if self.use_library:
            folders.append(library_folder())
        for folder in folders:
            path = folder / relative
            if path.is_file():
                return path
        return None

    def searched(self, including_folder: Path | None) -> list[str]:
        folders = [str(including_folder or Path.cwd())] + [str(d) for d in self.include_dirs]
        if self.use_library:
            folders.append("the sd-actors component library")
        return folders


def parse_text(text: str, path: Path | str, context: ParseContext) -> ComponentDescription:
    """Parse one file's text into a raw ROOT description (includes spliced)."""
    source = SourceText(text, path)
    return _Parser(source, tokenize(source), context).parse_file()


def parse_path(path: Path, context: ParseContext) -> ComponentDescription:
    resolved = path.resolve()
    cached = context.token_cache.get(resolved)
    if cached is None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise DescriptionSyntaxError(
                f"{path}: not UTF-8 text (byte {error.start})", hint="save the description as UTF-8"
            ) from None
        source = SourceText(text, path)
        cached = (source, tokenize(source))
        context.token_cache[resolved] = cached
    return _Parser(cached[0], cached[1], context).parse_file()


class _Parser:
    def __init__(self, source: SourceText, tokens: list[Token], context: ParseContext) -> None:
        self.source = source
        self.tokens = tokens
        self.pos = 0
        self.context = context
        self.depth = 0
        self.folder = source.path.parent if isinstance(source.path, Path) else None

    # -- token helpers -------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        index = self.pos + ahead
        return self.tokens[index] if index < len(self.tokens) else self.tokens[-1]

    def next(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind != "eof":
            self.pos += 1
        return token

    def at(self, kind: str) -> bool:
        return self.tokens[self.pos].kind == kind

    def accept(self, kind: str) -> bool:
        if self.tokens[self.pos].kind == kind:
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, what: str, hint: str | None = None) -> Token:
        token = self.peek()
        if token.kind != kind:
            raise self.unexpected(token, what, hint)
        return self.next()

    def location(self, token: Token) -> SourceLocation:
        # tuple.__new__ straight away: a NamedTuple's own __new__ is one more Python call, per attribute.
        return tuple.__new__(SourceLocation, (self.source.path, token.line, token.column))

    def unexpected(self, token: Token, expected: str, hint: str | None = None) -> DescriptionError:
        found = "end of file" if token.kind == "eof" else repr(token.text)
        if hint is None and token.kind == "number" and token.text.startswith("-"):
            hint = f"write '- {token.text[1:]}' with a space: '{token.text}' reads as one negative number"
        if hint is None and token.kind in ("+", "-", "*", "/", "%", "++", "<>", "==", "!=", ">=", "<=",
                                           "&&", "||", "x|", "->", ">", "<"):
            hint = "operators are only allowed inside parentheses: write (a + b)"
        return self.source.error(DescriptionSyntaxError, f"expected {expected}, found {found}",
                                 token.offset, hint)

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.source.error(NestingTooDeep, f"nesting deeper than {MAX_NESTING} levels", token.offset,
                                    "flatten the description, or split it with extends")

    def leave(self) -> None:
        self.depth -= 1

    # -- file and attribute lists --------------------------------------------------------------
    def parse_file(self) -> ComponentDescription:
        root = ComponentDescription(None, eager=False, location=self.source.location(0))
        if self.at("extends") and (self.peek(1).kind == "{" or self.peek(1).kind in ("DATA", "LAZY")):
            self.next()
            self.accept("DATA") or self.accept("LAZY")
            opening = self.expect("{", "'{' after the file-level extends")
            self.enter(opening)
            self.parse_attribute_list(root, "}")
            self.expect("}", "'}' closing the file-level extends")
            self.leave()
        else:
            self.parse_attribute_list(root, "eof")
        self.expect("eof", "an attribute or the end of the file")
        return root

    def parse_attribute_list(self, cd: ComponentDescription, end: str) -> None:
        while True:
            token = self.peek()
            kind = token.kind
            if kind == end or kind == "eof":
                return
            if kind == ";":
                self.next()
            elif kind == "include":
                self.parse_include(cd)
            else:
                self.parse_attribute(cd)

    def parse_include(self, cd: ComponentDescription) -> None:
        directive = self.next()
        if directive.value == "#codebase":
            self.expect("string", "a codebase string after #codebase")
            directive = self.expect("include", "#include after #codebase")
        name_token = self.expect("string", f'a file name in quotes after {directive.value}')
        name = str(name_token.value)
        optional = directive.value == "#include?"
        path = self.context.find_include(name, self.folder)
        if path is None:
            if optional:
                return
            searched = ", ".join(self.context.searched(self.folder))
            raise self.source.error(IncludeNotFound, f"include file {name!r} not found", name_token.offset,
                                    f"searched {searched}; add its folder with -I DIR, or use #include? "
                                    "for an optional file")
        resolved = path.resolve()
        if resolved in self.context.include_stack or len(self.context.include_stack) > MAX_INCLUDE_DEPTH:
            raise self.source.error(DescriptionSyntaxError, f"include cycle: {name!r} includes itself",
                                    name_token.offset, "remove the #include that closes the circle")
        self.context.include_stack.append(resolved)
        try:
            included = parse_path(path, self.context)
        finally:
            self.context.include_stack.pop()
        for key, value in included.raw_items():
            cd.set(key, value, tags=included.raw_tags(key), location=included.locations.get(key))

    def parse_attribute(self, cd: ComponentDescription) -> None:
        tags: frozenset[str] | None = None
        if self.at("["):
            tags = self.parse_tags()
        token = self.peek()
        if token.kind == "--":
            self.next()
            key: str | PlacementSlot = self.context.unique_name()
        elif token.kind == "string":
            self.next()
            key = str(token.value)
        elif token.kind == "word":
            self.next()
            parts = [token.text]
            while self.at(":"):
                self.next()
                parts.append(self.expect("word", "a name after ':' in a placed attribute's name").text)
            if len(parts) == 1:
                key = token.text
            else:
                key = PlacementSlot(tuple(parts), self.location(token))
                self.context.placements += 1
        else:
            if token.kind in NARY_OPERATORS or token.kind in BINARY_OPERATORS:
                hint = "operators are only allowed inside parentheses: write (a + b)"
            elif token.kind == "}":
                hint = "this '}' closes nothing"
            else:
                hint = "attribute names are words, quoted strings or --"
            raise self.unexpected(token, "an attribute name", hint)
        value = self.parse_value(cd)
        cd.set(key, value, tags=tags or frozenset(), location=self.location(token))

    def parse_tags(self) -> frozenset[str]:
        self.next()
        tags: list[str] = []
        while not self.at("]"):
            token = self.next()
            if token.kind in ("word", "string"):
                tags.append(str(token.value))
            else:
                raise self.unexpected(token, "a tag name or ']'")
            self.accept(",")
        self.next()
        return frozenset(tags)

    def parse_value(self, cd: ComponentDescription) -> object:
        token = self.peek()
        if token.kind == "extends":
            return self.parse_component(cd)
        if token.kind == ";":
            self.next()
            return None
        if token.kind not in _VALUE_STARTS:
            raise self.unexpected(token, "a value, 'extends' or ';'")
        return self.parse_simple_value(cd)

    # -- components ----------------------------------------------------------------------------
    def parse_component(self, parent: ComponentDescription) -> ComponentDescription:
        start = self.next()  # extends
        self.enter(start)
        if self.accept(":"):
            self.expect("word", "a node class name after 'extends :'")
        eager = True
        if self.at("DATA") or self.at("LAZY"):
            self.next()
            eager = False
        cd = ComponentDescription(parent, eager=eager, location=self.location(start))
        prototypes: list[object] = []
        self.parse_prototype(cd, prototypes, first=True)
        while True:
            if self.accept(","):
                self.parse_prototype(cd, prototypes, first=False)
            elif self.at("{"):
                self.parse_prototype(cd, prototypes, first=False)
                break
            else:
                break
        cd.prototypes = prototypes
        self.leave()
        return cd

    def parse_prototype(self, cd: ComponentDescription, prototypes: list[object], *, first: bool) -> None:
        token = self.peek()
        if token.kind == "NULL":
            self.next()
        elif token.kind == "{":
            self.next()
            body = ComponentDescription(cd, location=self.location(token))
            self.parse_attribute_list(body, "}")
            self.expect("}", "'}' closing the component", "every '{' needs a matching '}'")
            prototypes.append(body)
        elif token.kind in _REFERENCE_STARTS:
            prototypes.append(self.parse_link_reference())
        else:
            raise self.unexpected(token, "a prototype name or '{'" if first else "a prototype after ','",
                                  "write 'extends {}' for an empty component" if token.kind == ";" else None)

    # -- references ----------------------------------------------------------------------------
    def parse_link_reference(self) -> Reference:
        start = self.peek()
        parts = [self.parse_ref_part(first=True)]
        while self.at(":"):
            self.next()
            parts.append(self.parse_ref_part(first=False))
        return Reference(tuple(parts), location=self.location(start))

    def parse_ref_part(self, *, first: bool) -> RefPart:
        token = self.next()
        kind = token.kind
        if kind == "word":
            return RefPart(ATTRIB if first else HERE, token.text)
        if kind in (ROOT, PARENT, THIS, PROCESS):
            return RefPart(kind)
        if kind in NAMED_PART_KINDS:
            name = self.next()
            if name.kind not in ("word", "string"):
                raise self.unexpected(name, f"a name after {kind}")
            return RefPart(kind, str(name.value))
        raise self.unexpected(token, "a reference (a name, ROOT, PARENT, THIS, HERE, ATTRIB, …)")

    def parse_base_reference(self, parent: ComponentDescription, *, lazy: bool) -> object:
        token = self.peek()
        if token.kind in ("APPLY", "ASSERT"):
            self.next()
            opening = self.expect("{", f"'{{' after {token.kind}")
            self.enter(opening)
            body = ComponentDescription(parent, location=self.location(token))
            self.parse_attribute_list(body, "}")
            self.expect("}", f"'}}' closing {token.kind}")
            self.leave()
            return Apply(token.kind, body, lazy=lazy, location=self.location(token))
        optional = False
        default: object = NO_DEFAULT
        if token.kind == "OPTIONAL":
            self.next()
            optional = True
            if self.at("("):
                self.next()
                default = self.parse_primitive(parent)
                self.expect(")", "')' after the OPTIONAL default")
        if self.peek().kind not in _REFERENCE_STARTS:
            raise self.unexpected(self.peek(), "a reference")
        reference = self.parse_link_reference()
        return Reference(reference.parts, lazy=lazy, optional=optional, default=default,
                         location=self.location(token))

    # -- simple values -------------------------------------------------------------------------
    def parse_simple_value(self, parent: ComponentDescription) -> object:
        token = self.peek()
        kind = token.kind
        if kind == "LAZY":
            self.next()
            if self.at("OPTIONAL") or self.at("APPLY") or self.at("ASSERT") or self.peek().kind in _REFERENCE_STARTS:
                return self.parse_base_reference(parent, lazy=True)
            raise self.unexpected(self.peek(), "a reference after LAZY",
                                  "LAZY OPTIONAL(default) ref is the accepted order" if self.at("(") else None)
        if kind in _REFERENCE_STARTS or kind in ("OPTIONAL", "APPLY", "ASSERT"):
            return self.parse_base_reference(parent, lazy=False)
        if kind == "[":
            return self.parse_vector_expression(parent)
        if kind == "(":
            return self.parse_parenthesised(parent)
        if kind == "IF":
            return self.parse_if(parent)
        if kind == "SWITCH":
            return self.parse_switch(parent)
        return self.parse_primitive(parent)

    def parse_primitive(self, parent: ComponentDescription) -> object:
        token = self.next()
        kind = token.kind
        if kind in ("string", "number", "bytes"):
            return token.value
        if kind == "true":
            return True
        if kind == "false":
            return False
        if kind == "NULL":
            return None
        if kind == "TBD":
            return TBD
        if kind == "DATA":
            value = self.parse_base_reference(parent, lazy=False)
            if isinstance(value, Reference):
                return value.with_flags(data=True)
            return value
        if kind == "[|":
            self.enter(token)
            items: list[object] = []
            if not self.at("|]"):
                items.append(self.parse_literal_item(parent))
                while self.accept(","):
                    items.append(self.parse_literal_item(parent))
            self.expect("|]", "',' or '|]' in a literal vector",
                        "literal vectors [| |] hold only literal values; use [ ] for references")
            self.leave()
            return items
        if kind == "VAR":
            raise self.source.error(DescriptionSyntaxError, "VAR constraint variables are not supported",
                                    token.offset, "give the attribute a value")
        raise self.unexpected(token, "a value")

    def parse_literal_item(self, parent: ComponentDescription) -> object:
        token = self.peek()
        if token.kind in _REFERENCE_STARTS or token.kind in ("(", "[", "LAZY", "IF", "SWITCH", "OPTIONAL"):
            raise self.unexpected(token, "a literal value in [| |]",
                                  "literal vectors [| |] hold only literal values; use [ ] for references")
        return self.parse_primitive(parent)

    def function_cd(self, parent: ComponentDescription, short: str, token: Token) -> ComponentDescription:
        cd = ComponentDescription(parent, location=self.location(token))
        cd.set("phase.function", _names.CONSTRUCT_FUNCTION)
        cd.set("sfFunctionClass", _names.function(short))
        return cd

    def parse_vector_expression(self, parent: ComponentDescription) -> ComponentDescription:
        token = self.next()
        self.enter(token)
        cd = self.function_cd(parent, "Vector", token)
        if not self.at("]"):
            cd.set(self.context.unique_name(), self.parse_simple_value(cd))
            while self.accept(","):
                cd.set(self.context.unique_name(), self.parse_simple_value(cd))
        self.expect("]", "',' or ']' in a vector")
        self.leave()
        return cd

    def parse_parenthesised(self, parent: ComponentDescription) -> object:
        opening = self.next()
        self.enter(opening)
        if self.at("extends"):
            value: object = self.parse_component(parent)
        elif self.at("!"):
            token = self.next()
            cd = self.function_cd(parent, "Not", token)
            cd.set("data", self.parse_simple_value(cd))
            value = cd
        else:
            # The operator CD is created before its operands so that they are parsed inside it.
            first_start = self.peek()
            holder = ComponentDescription(parent, location=self.location(first_start))
            first = self.parse_simple_value(holder)
            operator = self.peek()
            if operator.kind in NARY_OPERATORS:
                cd = self.function_cd(parent, NARY_OPERATORS[operator.kind], operator)
                cd.set(self.context.unique_name(), first)
                while self.at(operator.kind):
                    self.next()
                    cd.set(self.context.unique_name(), self.parse_simple_value(cd))
                if self.peek().kind in NARY_OPERATORS or self.peek().kind in BINARY_OPERATORS:
                    raise self.source.error(
                        DescriptionSyntaxError, f"operator {self.peek().text!r} mixed with {operator.text!r}",
                        self.peek().offset, "operators have no precedence: nest them, e.g. (a + (b * c))")
                value = cd
            elif operator.kind in BINARY_OPERATORS:
                self.next()
                cd = self.function_cd(parent, BINARY_OPERATORS[operator.kind], operator)
                cd.set("left", first)
                cd.set("right", self.parse_simple_value(cd))
                value = cd
            else:
                value = first
                if isinstance(first, ComponentDescription | Apply):
                    (first if isinstance(first, ComponentDescription) else first.body).parent = parent
        closing = self.peek()
        if closing.kind != ")":
            hint = ("operators have no precedence: nest them, e.g. (a + (b * c))"
                    if closing.kind in BINARY_OPERATORS or closing.kind in NARY_OPERATORS else None)
            raise self.unexpected(closing, "')' or an operator", hint)
        self.next()
        self.leave()
        return value

    def parse_if(self, parent: ComponentDescription) -> ComponentDescription:
        token = self.next()
        self.enter(token)
        cd = self.function_cd(parent, "IfThenElse", token)
        cd.set("if", self.parse_simple_value(cd))
        self.expect("THEN", "THEN")
        cd.set("then", self.parse_simple_value(cd))
        self.expect("ELSE", "ELSE", "IF c THEN a ELSE b FI needs its ELSE")
        cd.set("else", self.parse_simple_value(cd))
        self.expect("FI", "FI closing IF … THEN … ELSE …")
        self.leave()
        return cd

    def parse_switch(self, parent: ComponentDescription) -> ComponentDescription:
        token = self.next()
        self.enter(token)
        cd = self.function_cd(parent, "Switch", token)
        if self.at("{"):
            self.next()
            self.parse_attribute_list(cd, "}")
            self.expect("}", "'}' closing the SWITCH attributes")
        cases = 0
        while self.at("IF"):
            self.next()
            cd.set(f"sfCaseIf{cases}", self.parse_simple_value(cd))
            self.expect("THEN", "THEN in a SWITCH case")
            cd.set(f"sfCaseThen{cases}", self.parse_simple_value(cd))
            cases += 1
        if cases == 0:
            raise self.unexpected(self.peek(), "IF … THEN … in SWITCH")
        self.expect("ENDSWITCH", "IF or ENDSWITCH")
        self.leave()
        return cd


def reparse_reference(text: str, *, location: SourceLocation | None = None) -> Reference:
    """Parse ``text`` as a reference (what the ``ref`` function does at link time)."""
    source = SourceText(text, location.path if location else "<reference>")
    parser = _Parser(source, tokenize(source), ParseContext(use_library=False))
    lazy = parser.accept("LAZY")
    value = parser.parse_base_reference(ComponentDescription(None), lazy=lazy)
    parser.expect("eof", "the end of the reference")
    if not isinstance(value, Reference):
        raise DescriptionError(f"{text!r} is not a reference", at=location)
    return value
