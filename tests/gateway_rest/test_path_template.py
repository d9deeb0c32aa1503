from __future__ import annotations

import pytest

from gateway_rest.path_template import TemplateError, parse


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/v1/agents", "/v1/agents", {}),
        ("/v1/agents/{id}", "/v1/agents/a1", {"id": "a1"}),
        ("/v1/{name=agents/*}", "/v1/agents/a1", {"name": "agents/a1"}),
        ("/v1/{name=agents/*/versions/*}", "/v1/agents/a1/versions/3", {"name": "agents/a1/versions/3"}),
        ("/v1/{parent=agents/*}/versions", "/v1/agents/a1/versions", {"parent": "agents/a1"}),
        ("/v1/{agent.name=agents/*}", "/v1/agents/a1", {"agent.name": "agents/a1"}),
        ("/v1/{name=agents/*}:publish", "/v1/agents/a1:publish", {"name": "agents/a1"}),
        ("/v1/files/{path=**}", "/v1/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("/v1/files/{path=**}", "/v1/files", {"path": ""}),
        ("/v1/{id}", "/v1/hello%20world", {"id": "hello world"}),
        ("/v1/{id}", "/v1/a%2Fb", {"id": "a/b"}),  # one segment: fully decoded
        ("/v1/files/{path=**}", "/v1/files/a%2Fb/c", {"path": "a%2Fb/c"}),  # reserved expansion keeps %2F
        ("/v1/agents/{id}:cancel", "/v1/agents/x:y:cancel", {"id": "x:y"}),
        ("/v1/*/items/{id}", "/v1/anything/items/7", {"id": "7"}),
        ("/.well-known/jwks.json", "/.well-known/jwks.json", {}),
    ],
)
def test_matches(template, path, expected):
    assert parse(template).match(path) == expected


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/v1/agents", "/v1/agents/"),
        ("/v1/agents/{id}", "/v1/agents"),
        ("/v1/agents/{id}", "/v1/agents/a/b"),
        ("/v1/agents/{id}", "/v1/agents/"),
        ("/v1/{name=agents/*}", "/v1/phone_numbers/p1"),
        ("/v1/{name=agents/*}:publish", "/v1/agents/a1"),
        ("/v1/{name=agents/*}:publish", "/v1/agents/a1:archive"),
        ("/v1/agents", "v1/agents"),
    ],
)
def test_rejects(template, path):
    assert parse(template).match(path) is None


def test_verb_and_tokens():
    template = parse("/v1/{name=agents/*}:publish")
    assert template.verb == "publish"
    assert template.tokens == ("v1", "agents", "*")
    assert template.variables[0].field_path == "name"


def test_specificity_prefers_literals_and_verbs():
    general = parse("/v1/{name=agents/*}")
    verb = parse("/v1/{name=agents/*}:publish")
    literal = parse("/v1/agents/me")
    assert verb.specificity > general.specificity
    assert literal.specificity > general.specificity


def test_render_round_trips():
    template = parse("/v1/{name=agents/*/versions/*}:restore")
    path = template.render({"name": "agents/a1/versions/2"})
    assert path == "/v1/agents/a1/versions/2:restore"
    assert template.match(path) == {"name": "agents/a1/versions/2"}


@pytest.mark.parametrize(
    "template",
    ["v1/agents", "/v1/{name", "/v1/{name}}", "/v1/{a.}", "/v1/{x={y}}", "/v1/**/tail", "/v1//x", "/v1/{id}/{id}"],
)
def test_malformed_templates(template):
    with pytest.raises(TemplateError):
        parse(template)
