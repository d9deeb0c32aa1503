"""Find the binding for an HTTP request.

404 when no template matches the path; 405 with the allowed methods when templates
match the path but not for this method.
"""

from __future__ import annotations

import urllib.parse
from collections import defaultdict

from gateway_rest.descriptors import Binding


class NoRoute(LookupError):
    """No binding matches the path."""


class MethodNotAllowed(LookupError):
    """Bindings match the path, but none for this HTTP method."""

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


def _prefix(tokens: tuple[str, ...]) -> tuple[str, ...]:
    literal: list[str] = []
    for token in tokens[:2]:
        if token in ("*", "**"):
            break
        literal.append(token)
    return tuple(literal)


class Router:
    """Bindings indexed by their leading literal segments, most specific first."""

    def __init__(self, bindings: list[Binding]) -> None:
        index: dict[tuple[str, ...], list[Binding]] = defaultdict(list)
        for binding in bindings:
            index[_prefix(binding.template.tokens)].append(binding)
        self._index = {
            key: sorted(value, key=lambda b: b.template.specificity, reverse=True) for key, value in index.items()
        }

    def match(self, http_method: str, path: str) -> tuple[Binding, dict[str, str]]:
        """The binding and the path variables for a request.

        Raises:
            NoRoute: nothing matches the path.
            MethodNotAllowed: the path matches, the method does not.

        """
        parts = path[1:].split("/", 2) if path.startswith("/") else []
        # A verb on the second segment ("/v1/agents:browse") must not hide its prefix, nor may a
        # percent-encoded literal ("/v1/%73helves/…"): templates compare literals decoded.
        heads = [urllib.parse.unquote(p.split(":", 1)[0]) for p in parts[:2]]
        keys = [tuple(heads[:2]), tuple(heads[:1]), ()]
        allowed: list[str] = []
        verb: str | None = None
        for key in dict.fromkeys(keys):
            for binding in self._index.get(key, ()):
                if verb is not None and binding.template.verb != verb:
                    continue  # "/x/a:publish" matched a ":publish" route; "{name}" must not claim it too
                variables = binding.template.match(path)
                if variables is None:
                    continue
                verb = binding.template.verb
                if binding.http_method == http_method:
                    return binding, variables
                if binding.http_method not in allowed:
                    allowed.append(binding.http_method)
        if allowed:
            if "GET" in allowed and http_method == "HEAD":
                return self.match("GET", path)
            raise MethodNotAllowed(sorted(allowed))
        raise NoRoute(path)
