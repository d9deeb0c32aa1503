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


class TeamRpcs(RpcBase):
    """CreateTeam, GetTeam, ListTeams, UpdateTeam, DeleteTeam, AddTeamMember, RemoveTeamMember."""

    async def CreateTeam(self, request: pb.CreateTeamRequest, context: Context) -> pb.CreateTeamResponse:
        """Create a team in the caller's organisation (idempotent by request_id)."""
        principal = current()
        organization_id = self._home(principal)
        message = request.team
        display_name = common.display_name(message.display_name, "team.display_name")
        description = rules.description(message.description)
        labels = common.labels(message.labels, "team.labels")
        team_id = common.client_chosen_id(request.team_id, "team_id") or common.new_id("team")
        request_id = request.request_id.strip()
        if len(request_id) > 128:
            raise InvalidArgument("request_id too long", {"request_id": "at most 128 characters"})
        now = self._now()
        async with self._sessions.begin() as session:
            organization = await self._organization(session, principal, organization_id)
            ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)
            if request_id:
                earlier = await team_store.by_request_id(session, organization_id, request_id)
                if earlier is not None:
                    return pb.CreateTeamResponse(team=await _message(session, earlier))
            if await team_store.get(session, team_id) is not None:
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
        principal = current()
        async with self._sessions.begin() as session:
            row = await _visible_team(session, principal, request.name)
            return pb.GetTeamResponse(team=await _message(session, row))

    async def ListTeams(self, request: pb.ListTeamsRequest, context: Context) -> pb.ListTeamsResponse:
        """List the caller's organisation's teams by display name."""
        principal = current()
        organization_id = self._home(principal)
        conditions = filters.parse(request.filter, team_store.FILTERABLE)
        size = paging.page_size(request.page_size)
        bound = paging.fingerprint("teams", organization_id, request.filter)
        after = paging.decode_token(request.page_token, bound)
        async with self._sessions.begin() as session:
            rows, next_key = await team_store.list_page(
                session, organization_id, conditions=conditions, after=after, limit=size
            )
            members = await team_store.members(session, [r.id for r in rows])
        return pb.ListTeamsResponse(
            teams=[convert.team(r, members[r.id]) for r in rows],
            next_page_token=paging.encode_token(next_key, bound) if next_key else "",
        )

    async def UpdateTeam(self, request: pb.UpdateTeamRequest, context: Context) -> pb.UpdateTeamResponse:
        """Change a team's display name, description or labels."""
        principal = current()
        message = request.team
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
            row = await _visible_team(session, principal, message.name, field="team.name")
            await self._writable(session, principal, row)
            common.check_etag(message.etag, row.id, row.version)
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
        async with self._sessions.begin() as session:
            row = await _visible_team(session, principal, request.name)
            await self._writable(session, principal, row)
            common.check_etag(request.etag, row.id, row.version)
            await team_store.remove(session, row)
        return pb.DeleteTeamResponse()

    async def AddTeamMember(self, request: pb.AddTeamMemberRequest, context: Context) -> pb.AddTeamMemberResponse:
        """Add a member of the organisation to a team, or change their lead flag."""
        principal = current()
        membership_id = common.parse_name(request.member, "members", "member")
        async with self._sessions.begin() as session:
            row = await _visible_team(session, principal, request.name)
            await self._writable(session, principal, row)
            membership = await member_store.get(session, membership_id)
            if membership is None or membership.organization_id != row.organization_id:
                raise NotFound("member not found in the team's organization")
            place = await team_store.place(session, row.id, membership_id)
            if place is None:
                rules.check_room(await team_store.member_count(session, row.id))
                await team_store.add_place(
                    session,
                    TeamMember(team_id=row.id, membership_id=membership_id, lead=request.lead, add_time=self._now()),
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
        membership_id = common.parse_name(request.member, "members", "member")
        async with self._sessions.begin() as session:
            row = await _visible_team(session, principal, request.name)
            await self._writable(session, principal, row)
            place = await team_store.place(session, row.id, membership_id)
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


async def _visible_team(session: AsyncSession, principal: Principal, name: str, field: str = "name") -> Team:
    """A team the caller may see.

    Raises:
        NotFound: it does not exist, or belongs to another tenant.

    """
    row = await team_store.get(session, common.parse_name(name, "teams", field))
    if row is None or not principal.can_access(row.organization_id):
        raise NotFound("team not found")
    return row


async def _message(session: AsyncSession, row: Team) -> team_pb2.Team:
    members = await team_store.members(session, [row.id])
    return convert.team(row, members[row.id])
