"""Team hub's rules, without I/O: roles, organisation lifecycle, invitations, teams, paging.

Everything here takes plain values and the current time and raises ``mesh.errors``
exceptions whose field violations name the request fields.
"""
