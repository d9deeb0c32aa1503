from __future__ import annotations

import pytest

from mesh.errors import InvalidArgument
from mesh.kit.masks import UpdateMask
from vocelio.agents.v1 import agent_pb2

AGENT = UpdateMask.for_message(agent_pb2.Agent)


def test_updatable_fields_come_from_field_behavior():
    # name is IDENTIFIER; organization_id, state, versions and audit are OUTPUT_ONLY; etag is compared.
    assert AGENT.updatable == ("description", "display_name", "draft", "labels")
    assert AGENT.required == ("display_name",)
    assert UpdateMask.for_message(agent_pb2.Agent) is AGENT


def test_explicit_paths_are_canonical():
    patch = agent_pb2.Agent(display_name="New")
    assert AGENT.resolve(["draft.prompt", "display_name", "draft"], patch) == ("display_name", "draft")
    assert AGENT.resolve(["draft.prompt"], patch) == ("draft.prompt",)
    assert AGENT.resolve(["*"], patch) == AGENT.updatable


def test_every_bad_path_is_named_by_its_index():
    with pytest.raises(InvalidArgument) as raised:
        AGENT.resolve(
            ["name", "display_name", "state", "etag", "draft.nope", "nope", "labels.x", "draft."], agent_pb2.Agent()
        )
    violations = raised.value.field_violations
    assert set(violations) == {f"update_mask.paths[{i}]" for i in (0, 2, 3, 4, 5, 6, 7)}
    assert "identifies the resource" in violations["update_mask.paths[0]"]
    assert "output only" in violations["update_mask.paths[2]"]
    assert "compared, not written" in violations["update_mask.paths[3]"]


def test_an_empty_mask_means_the_populated_fields():
    patch = agent_pb2.Agent(display_name="X", state=agent_pb2.AGENT_STATE_ARCHIVED, labels={"a": "b"})
    patch.draft.prompt = "Hi"
    assert AGENT.resolve([], patch) == ("display_name", "draft.prompt", "labels")
    with pytest.raises(InvalidArgument) as raised:
        AGENT.resolve([], agent_pb2.Agent(state=agent_pb2.AGENT_STATE_ARCHIVED))
    assert list(raised.value.field_violations) == ["update_mask"]
    with pytest.raises(InvalidArgument):
        AGENT.resolve(["*", "labels"], patch)


def test_apply_replaces_named_fields_whole_and_required_fields_stay_set():
    current = agent_pb2.Agent(name="n", display_name="Old", labels={"a": "1", "b": "2"})
    current.draft.prompt = "keep"
    current.draft.first_message = "old"
    patch = agent_pb2.Agent(display_name="", labels={"c": "3"})
    patch.draft.first_message = "new"
    updated = AGENT.apply(current, patch, ["display_name", "draft.first_message", "labels"])
    assert dict(updated.labels) == {"c": "3"}
    assert updated.draft.prompt == "keep"
    assert updated.draft.first_message == "new"
    assert updated.name == "n"
    assert current.display_name == "Old"  # the input is untouched
    assert AGENT.required_problems(updated, prefix="agent.") == {"agent.display_name": "is required"}
