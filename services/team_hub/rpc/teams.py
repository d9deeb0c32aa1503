"""Team RPCs: create, get, list, update, delete, add and remove members."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import AlreadyExists, InvalidArgument, NotFound
from mesh.principal import Principal, current
from services.team_hub import convert
from services.team_hub.domain import common, filters, paging
from services.team_hub.domain import teams as rules
from services.team_hub.domain.organizations import OrganizationState, ensure_writable
from services.team_hub.models import Team, TeamMember
from services.team_hub.rpc.base import Context, RpcBase
from services.team_hub.store import members as member_store
from services.team_hub.store import teams as team_store
from vocelio.team_hub.v1 import team_hub_service_pb2 as pb
from vocelio.team_hub.v1 import team_pb2

# The one answer for a team that is missing or in another organisation.
_NOT_FOUND = "team not found"


class TeamRpcs(RpcBase):
    """CreateTeam, GetTeam, ListTeams, UpdateTeam, DeleteTeam, AddTeamMember, RemoveTeamMember."""

    async def CreateTeam(self, request: pb.CreateTeamRequest, context: Context) -> pb.CreateTeamResponse:
        """Create a team in an organisation (idempotent by request_id)."""
        principal = current()
        organization_id = self._parent(principal, request.parent)
        message = request.team
        display_name = common.display_name(message.display_name, "team.display_name")
        description = rules.description(message.description)
        labels = common.labels(message.labels, "team.labels")
        chosen_id = common.client_chosen_id(request.team_id, "team_id")
        team_id = chosen_id or common.new_id("team")
        request_id = common.request_id(request.request_id)
        now = self._now()
        async with self._sessions.begin() as session:
            organization = await self._organization(session, principal, organization_id)
            ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)
            if request_id:
                earlier = await team_store.by_request_id(session, organization_id, request_id)
                if earlier is not None:
                    if earlier.display_name != display_name or (chosen_id and earlier.id != chosen_id):
                        raise InvalidArgument(
                            "request_id was already used for another team",
                            {"request_id": "a new UUID4 for every logical request"},
                        )
                    return pb.CreateTeamResponse(team=await _message(session, earlier))
            if await team_store.get(session, organization_id, team_id) is not None:
                raise AlreadyExists(f"team {team_id} already exists")
            if await team_store.display_name_taken(session, organization_id, display_name):
                raise AlreadyExists(f"a team named {display_name!r} already exists")
            row = Team(
                id=team_id,
                organization_id=organization_id,
                display_name=display_name,
                description=description,
                labels=labels,
                request_id=request_id or None,
                create_time=now,
                update_time=now,
                creator=principal.subject,
                last_modifier=principal.subject,
                version=1,
            )
            await team_store.flush(session, row)
            return pb.CreateTeamResponse(team=await _message(session, row))

    async def GetTeam(self, request: pb.GetTeamRequest, context: Context) -> pb.GetTeamResponse:
        """Get one team with its members."""
        organization_id, team_id = self._child(current(), request.name, "teams", _NOT_FOUND)
        async with self._sessions.begin() as session:
            row = await _team(session, organization_id, team_id)
            return pb.GetTeamResponse(team=await _message(session, row))

    async def ListTeams(self, request: pb.ListTeamsRequest, context: Context) -> pb.ListTeamsResponse:
        """List an organisation's teams by display name."""
        principal = current()
        organization_id = self._parent(principal, request.parent)
        conditions = filters.parse(request.filter, team_store.FILTERABLE)
        size = paging.page_size(request.page_size)
        bound = paging.fingerprint("teams", organization_id, request.filter)
        after = paging.decode_token(request.page_token, bound)
        async with self._sessions.begin() as session:
            rows, next_key = await team_store.list_page(
                session, organization_id, conditions=conditions, after=after, limit=size
            )
            members = await team_store.members(session, organization_id, [r.id for r in rows])
        return pb.ListTeamsResponse(
            teams=[convert.team(r, members[r.id]) for r in rows],
            next_page_token=paging.encode_token(next_key, bound) if next_key else "",
        )

    async def UpdateTeam(self, request: pb.UpdateTeamRequest, context: Context) -> pb.UpdateTeamResponse:
        """Change a team's display name, description or labels."""
        principal = current()
        message = request.team
        organization_id, team_id = self._child(principal, message.name, "teams", _NOT_FOUND, "team.name")
        populated = {field.name for field, _ in message.ListFields()}
        fields = common.update_paths(list(request.update_mask.paths), rules.UPDATABLE_FIELDS, populated)
        values: dict[str, object] = {}
        if "display_name" in fields:
            values["display_name"] = common.display_name(message.display_name, "team.display_name")
        if "description" in fields:
            values["description"] = rules.description(message.description)
        if "labels" in fields:
            values["labels"] = common.labels(message.labels, "team.labels")
        async with self._sessions.begin() as session:
            row = await _team(session, organization_id, team_id)
            await self._writable(session, principal, row)
            common.check_etag(message.etag, message.name, row.version)
            name = values.get("display_name")
            if isinstance(name, str) and await team_store.display_name_taken(
                session, row.organization_id, name, other_than=row.id
            ):
                raise AlreadyExists(f"a team named {name!r} already exists")
            changed = [key for key, value in values.items() if getattr(row, key) != value]
            for key in changed:
                setattr(row, key, values[key])
            if changed:
                self._touch(row, principal)
                await team_store.flush(session, row)
            return pb.UpdateTeamResponse(team=await _message(session, row))

    async def DeleteTeam(self, request: pb.DeleteTeamRequest, context: Context) -> pb.DeleteTeamResponse:
        """Delete a team; its members stay in the organisation."""
        principal = current()
        organization_id, team_id = self._child(principal, request.name, "teams", _NOT_FOUND)
        async with self._sessions.begin() as session:
            row = await _team(session, organization_id, team_id)
            await self._writable(session, principal, row)
            common.check_etag(request.etag, request.name, row.version)
            await team_store.remove(session, row)
        return pb.DeleteTeamResponse()

    async def AddTeamMember(self, request: pb.AddTeamMemberRequest, context: Context) -> pb.AddTeamMemberResponse:
        """Add a member of the organisation to a team, or change their lead flag."""
        principal = current()
        organization_id, team_id = self._child(principal, request.name, "teams", _NOT_FOUND)
        member_organization, membership_id = common.parse_child(request.member, "members", "member")
        async with self._sessions.begin() as session:
            row = await _team(session, organization_id, team_id)
            await self._writable(session, principal, row)
            # A member of another organisation answers exactly what a missing one does.
            membership = (
                await member_store.get(session, organization_id, membership_id)
                if member_organization == organization_id
                else None
            )
            if membership is None:
                raise NotFound("member not found in the team's organization")
            place = await team_store.place(session, organization_id, team_id, membership_id)
            if place is None:
                rules.check_room(await team_store.member_count(session, organization_id, team_id))
                await team_store.add_place(
                    session,
                    TeamMember(
                        organization_id=organization_id,
                        team_id=team_id,
                        membership_id=membership_id,
                        lead=request.lead,
                        add_time=self._now(),
                    ),
                )
                self._touch(row, principal)
            elif place.lead != request.lead:
                place.lead = request.lead
                self._touch(row, principal)
            await team_store.flush(session, row)
            return pb.AddTeamMemberResponse(team=await _message(session, row))

    async def RemoveTeamMember(
        self, request: pb.RemoveTeamMemberRequest, context: Context
    ) -> pb.RemoveTeamMemberResponse:
        """Take a member out of a team (a non-member is a no-op)."""
        principal = current()
        organization_id, team_id = self._child(principal, request.name, "teams", _NOT_FOUND)
        member_organization, membership_id = common.parse_child(request.member, "members", "member")
        async with self._sessions.begin() as session:
            row = await _team(session, organization_id, team_id)
            await self._writable(session, principal, row)
            place = (
                await team_store.place(session, organization_id, team_id, membership_id)
                if member_organization == organization_id
                else None
            )
            if place is not None:
                await team_store.remove_place(session, place)
                self._touch(row, principal)
                await team_store.flush(session, row)
            return pb.RemoveTeamMemberResponse(team=await _message(session, row))

    async def _writable(self, session: AsyncSession, principal: Principal, row: Team) -> None:
        organization = await self._organization(session, principal, row.organization_id)
        ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)

    def _touch(self, row: Team, principal: Principal) -> None:
        row.version += 1
        row.update_time = self._now()
        row.last_modifier = principal.subject


async def _team(session: AsyncSession, organization_id: str, team_id: str) -> Team:
    """A team of the organisation (which the caller may see: checked by ``_child``).

    Raises:
        NotFound: no such team in the organisation.

    """
    row = await team_store.get(session, organization_id, team_id)
    if row is None:
        raise NotFound(_NOT_FOUND)
    return row


async def _message(session: AsyncSession, row: Team) -> team_pb2.Team:
    members = await team_store.members(session, row.organization_id, [row.id])
    return convert.team(row, members[row.id])
