"""Team hub: organisations (tenants), their members and roles, invitations and teams.

The source of the role a user holds in an organisation: identity reads it here when it
grants tokens (``ListUserMemberships``), and asks here to create an organisation at
sign-up (``ProvisionOrganization``) or to redeem an invitation (``RedeemInvitation``).
"""
