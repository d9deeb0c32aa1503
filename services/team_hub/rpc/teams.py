"""Team RPCs: create, get, list, update, delete, add and remove members."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import AlreadyExists, NotFound
from mesh.kit import etags, ids, paging, tenancy
from mesh.kit.masks import UpdateMask
from mesh.kit.names import ParsedName
from mesh.principal import Principal, current
from services.team_hub import convert
from services.team_hub.domain import common
from services.team_hub.domain import teams as rules
from services.team_hub.domain.organizations import OrganizationState, ensure_writable
from services.team_hub.models import Team, TeamMember
from services.team_hub.names import MEMBERS, TEAMS
from services.team_hub.rpc.base import Context, RpcBase
from services.team_hub.store import members as member_store
from services.team_hub.store import teams as team_store
from vocelio.team_hub.v1 import team_hub_service_pb2 as pb
from vocelio.team_hub.v1 import team_pb2

_MASK = UpdateMask.for_message(team_pb2.Team)


class TeamRpcs(RpcBase):
    """CreateTeam, GetTeam, ListTeams, UpdateTeam, DeleteTeam, AddTeamMember, RemoveTeamMember."""

    async def CreateTeam(self, request: pb.CreateTeamRequest, context: Context) -> pb.CreateTeamResponse:
        """Create a team in an organisation (idempotent by request_id)."""
        principal = current()
        organization_id = self._write_parent(principal, request.parent, TEAMS)
        message = request.team
        display_name = common.display_name(message.display_name, "team.display_name")
        description = rules.description(message.description)
        labels = common.labels(message.labels, "team.labels")
        team_id = ids.chosen_or_new(request.team_id, "team", field="team_id")
        async with self._sessions.begin() as session:
            organization = await self._organization(session, principal, organization_id)
            ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)
            claim = await self._idempotency.claim(
                session,
                method="CreateTeam",
                organization_id=organization_id,
                principal=principal.subject,
                request=request,
                response_type=pb.CreateTeamResponse,
            )
            if claim.replay is not None:
                return claim.replay
            if await team_store.get(session, organization_id, team_id) is not None:
                raise AlreadyExists(f"{TEAMS.format(organization=organization_id, team=team_id)} already exists")
            if await team_store.display_name_taken(session, organization_id, display_name):
                raise AlreadyExists(f"a team named {display_name!r} already exists")
            row = Team(
                id=team_id,
                organization_id=organization_id,
                display_name=display_name,
                description=description,
                labels=labels,
                revision=1,
            )
            row.stamp_created(principal.subject, self._clock.now())
            await team_store.flush(session, row)
            response = pb.CreateTeamResponse(team=await _message(session, row))
            await claim.complete(session, response)
            return response

    async def GetTeam(self, request: pb.GetTeamRequest, context: Context) -> pb.GetTeamResponse:
        """Get one team with its members."""
        name = TEAMS.parse(request.name)
        async with self._sessions.begin() as session:
            row = await _team(session, current(), name)
            return pb.GetTeamResponse(team=await _message(session, row))

    async def ListTeams(self, request: pb.ListTeamsRequest, context: Context) -> pb.ListTeamsResponse:
        """List an organisation's teams (every one's for ``organizations/-``) by display name."""
        scope = self._list_scope(current(), request.parent, TEAMS)
        size = paging.page_size(request.page_size)
        binding = paging.query_binding(request, scope.binding())
        after = self._page_tokens.decode_optional(request.page_token, binding)
        async with self._sessions.begin() as session:
            page = await team_store.list_page(session, scope, filter_text=request.filter, after=after, limit=size)
            members = {
                organization_id: await team_store.members(
                    session, organization_id, [r.id for r in page.items if r.organization_id == organization_id]
                )
                for organization_id in {r.organization_id for r in page.items}
            }
        return pb.ListTeamsResponse(
            teams=[convert.team(r, members[r.organization_id][r.id]) for r in page.items],
            next_page_token="" if page.next_after is None else self._page_tokens.encode(page.next_after, binding),
        )

    async def UpdateTeam(self, request: pb.UpdateTeamRequest, context: Context) -> pb.UpdateTeamResponse:
        """Change a team's display name, description or labels."""
        principal = current()
        message = request.team
        name = TEAMS.parse(message.name, field="team.name")
        fields = set(_MASK.resolve(request.update_mask.paths, message))
        values: dict[str, object] = {}
        if "display_name" in fields:
            values["display_name"] = common.display_name(message.display_name, "team.display_name")
        if "description" in fields:
            values["description"] = rules.description(message.description)
        if "labels" in fields:
            values["labels"] = common.labels(message.labels, "team.labels")
        async with self._sessions.begin() as session:
            row = await _team(session, principal, name)
            await self._writable(session, principal, row)
            etags.check_etag(message.etag, row.etag_for(message.name), what="the team")
            new_name = values.get("display_name")
            if isinstance(new_name, str) and await team_store.display_name_taken(
                session, row.organization_id, new_name, other_than=row.id
            ):
                raise AlreadyExists(f"a team named {new_name!r} already exists")
            changed = [key for key, value in values.items() if getattr(row, key) != value]
            for key in changed:
                setattr(row, key, values[key])
            if changed:
                row.stamp_changed(principal.subject, self._clock.now())
                await team_store.flush(session, row)
            return pb.UpdateTeamResponse(team=await _message(session, row))

    async def DeleteTeam(self, request: pb.DeleteTeamRequest, context: Context) -> pb.DeleteTeamResponse:
        """Delete a team; its members stay in the organisation."""
        principal = current()
        name = TEAMS.parse(request.name)
        async with self._sessions.begin() as session:
            row = await _team(session, principal, name)
            await self._writable(session, principal, row)
            etags.check_etag(request.etag, row.etag_for(request.name), what="the team")
            await team_store.remove(session, row)
        return pb.DeleteTeamResponse()

    async def AddTeamMember(self, request: pb.AddTeamMemberRequest, context: Context) -> pb.AddTeamMemberResponse:
        """Add a member of the organisation to a team, or change their lead flag."""
        principal = current()
        name = TEAMS.parse(request.name)
        member = MEMBERS.parse(request.member, field="member")
        async with self._sessions.begin() as session:
            row = await _team(session, principal, name)
            await self._writable(session, principal, row)
            membership = await member_store.get(session, member.organization, member["member"])
            # A member of another organisation answers exactly what a missing one does.
            if membership is None or member.organization != row.organization_id:
                raise NotFound("member not found in the team's organization")
            place = await team_store.place(session, row.organization_id, row.id, membership.id)
            if place is None:
                rules.check_room(await team_store.member_count(session, row.organization_id, row.id))
                await team_store.add_place(
                    session,
                    TeamMember(
                        organization_id=row.organization_id,
                        team_id=row.id,
                        membership_id=membership.id,
                        lead=request.lead,
                        add_time=self._clock.now(),
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
        name = TEAMS.parse(request.name)
        member = MEMBERS.parse(request.member, field="member")
        async with self._sessions.begin() as session:
            row = await _team(session, principal, name)
            await self._writable(session, principal, row)
            place = await team_store.place(session, member.organization, row.id, member["member"])
            if place is not None and member.organization == row.organization_id:
                await team_store.remove_place(session, place)
                self._touch(row, principal)
                await team_store.flush(session, row)
            return pb.RemoveTeamMemberResponse(team=await _message(session, row))

    async def _writable(self, session: AsyncSession, principal: Principal, row: Team) -> None:
        organization = await self._organization(session, principal, row.organization_id)
        ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)

    def _touch(self, row: Team, principal: Principal) -> None:
        """A change of the team's members is a change of the team (its etag moves)."""
        row.stamp_changed(principal.subject, self._clock.now())


async def _team(session: AsyncSession, principal: Principal, name: ParsedName) -> Team:
    """A team the caller may see.

    Raises:
        NotFound: it does not exist, or is in another organisation (the same answer).

    """
    row = await team_store.get(session, name.organization, name["team"])
    if row is None or tenancy.read_scope_for_name(principal, name.organization) is None:
        raise tenancy.not_found(name.name)
    return row


async def _message(session: AsyncSession, row: Team) -> team_pb2.Team:
    members = await team_store.members(session, row.organization_id, [row.id])
    return convert.team(row, members[row.id])
