"""Path templates of google/api/http.proto: parse once, match many times.

Grammar (http.proto)::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    Verb     = ":" LITERAL ;

``{name}`` means ``{name=*}``. ``*`` matches one non-empty segment, ``**`` zero or more
(only as the last segment). A variable that spans one segment is percent-decoded fully;
one that spans several keeps ``%2F`` encoded, so a decoded value never gains a ``/`` the
client did not write as a separator (http.proto's "reserved expansion").
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LITERAL = re.compile(r"^[^/{}*:]+$")


class TemplateError(ValueError):
    """A path template does not follow the grammar of google/api/http.proto."""


@dataclasses.dataclass(frozen=True, slots=True)
class Variable:
    """A variable binding tokens ``start`` … ``end - 1`` to a request field path."""

    field_path: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True, slots=True)
class PathTemplate:
    """A parsed template.

    Attributes:
        source: the template as written.
        tokens: one entry per segment: a literal, ``*`` or ``**``.
        variables: the variables, in order.
        verb: the custom verb without its colon, or ``""``.

    """

    source: str
    tokens: tuple[str, ...]
    variables: tuple[Variable, ...]
    verb: str

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """Sort key: templates that say more about a path are tried first."""
        literals = sum(1 for t in self.tokens if t not in ("*", "**"))
        deep = sum(1 for t in self.tokens if t == "**")
        return (1 if self.verb else 0, literals, -deep, len(self.tokens))

    def match(self, path: str) -> dict[str, str] | None:
        """Match a raw (still percent-encoded) URL path.

        Returns:
            The decoded value of every variable, by field path; ``None`` if the path does
            not match.

        """
        if not path.startswith("/"):
            return None
        body = path[1:]
        if self.verb:
            suffix = ":" + self.verb
            if not body.endswith(suffix):
                return None
            body = body[: -len(suffix)]
        segments = body.split("/")
        spans = self._match_segments(segments)
        if spans is None:
            return None
        values: dict[str, str] = {}
        for variable in self.variables:
            first, last = spans[variable.start], spans[variable.end - 1] if variable.end > variable.start else None
            if last is None:
                continue
            begin = first[0]
            stop = last[1]
            raw = segments[begin:stop]
            if len(raw) == 1 and self.tokens[variable.start] != "**":
                values[variable.field_path] = urllib.parse.unquote(raw[0])
            else:
                values[variable.field_path] = "/".join(_unquote_keep_slash(s) for s in raw)
        return values

    def _match_segments(self, segments: list[str]) -> list[tuple[int, int]] | None:
        # Each token claims [begin, end) of the segments; "**" claims what is left.
        spans: list[tuple[int, int]] = []
        position = 0
        for index, token in enumerate(self.tokens):
            if token == "**":
                remaining = len(self.tokens) - index - 1
                end = len(segments) - remaining
                if end < position:
                    return None
                spans.append((position, end))
                position = end
                continue
            if position >= len(segments):
                return None
            segment = segments[position]
            if token == "*":
                if not segment:
                    return None
            elif urllib.parse.unquote(segment) != token:
                return None
            spans.append((position, position + 1))
            position += 1
        if position != len(segments):
            return None
        return spans

    def render(self, values: dict[str, str]) -> str:
        """Build a path from variable values (used by the OpenAPI generator and tests)."""
        parts: list[str] = []
        index = 0
        by_start = {v.start: v for v in self.variables}
        while index < len(self.tokens):
            variable = by_start.get(index)
            if variable is not None:
                parts.append(values[variable.field_path])
                index = variable.end
                continue
            parts.append(self.tokens[index])
            index += 1
        return "/" + "/".join(parts) + (":" + self.verb if self.verb else "")


def parse(template: str) -> PathTemplate:
    """Parse a template.

    Raises:
        TemplateError: the template is malformed.

    """
    if not template.startswith("/"):
        raise TemplateError(f"{template!r}: a template starts with '/'")
    body = template[1:]
    verb = ""
    # The verb is a ':' after the last '/' and outside any variable.
    depth = 0
    for position, char in enumerate(body):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == ":" and depth == 0 and "/" not in body[position:]:
            verb = body[position + 1 :]
            body = body[:position]
            if not _LITERAL.match(verb):
                raise TemplateError(f"{template!r}: bad verb {verb!r}")
            break
    tokens: list[str] = []
    variables: list[Variable] = []
    for piece in _split_outside_braces(body, template):
        if piece.startswith("{"):
            if not piece.endswith("}"):
                raise TemplateError(f"{template!r}: unclosed variable")
            inner = piece[1:-1]
            field_path, _, sub = inner.partition("=")
            if not _IDENT.match(field_path):
                raise TemplateError(f"{template!r}: bad field path {field_path!r}")
            sub_tokens = sub.split("/") if sub else ["*"]
            start = len(tokens)
            for token in sub_tokens:
                _check_token(token, template)
                tokens.append(token)
            variables.append(Variable(field_path, start, len(tokens)))
        else:
            _check_token(piece, template)
            tokens.append(piece)
    if "**" in tokens[:-1]:
        raise TemplateError(f"{template!r}: '**' must be the last segment")
    if len({v.field_path for v in variables}) != len(variables):
        raise TemplateError(f"{template!r}: a field is bound twice")
    return PathTemplate(template, tuple(tokens), tuple(variables), verb)


def _check_token(token: str, template: str) -> None:
    if token in ("*", "**"):
        return
    if not _LITERAL.match(token):
        raise TemplateError(f"{template!r}: bad segment {token!r}")


def _split_outside_braces(body: str, template: str) -> list[str]:
    pieces: list[str] = []
    current = ""
    depth = 0
    for char in body:
        if char == "{":
            depth += 1
            if depth > 1:
                raise TemplateError(f"{template!r}: nested variables")
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise TemplateError(f"{template!r}: unbalanced braces")
        if char == "/" and depth == 0:
            pieces.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise TemplateError(f"{template!r}: unbalanced braces")
    pieces.append(current)
    if any(p == "" for p in pieces):
        raise TemplateError(f"{template!r}: empty segment")
    return pieces


def _unquote_keep_slash(segment: str) -> str:
    parts = re.split(r"(%2[Ff])", segment)
    return "".join(p if p.lower() == "%2f" else urllib.parse.unquote(p) for p in parts)
