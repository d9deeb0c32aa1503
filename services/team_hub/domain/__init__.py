"""Team hub's rules, without I/O: roles, organisation lifecycle, invitations, teams, field rules.

Everything here takes plain values and the current time and raises ``mesh.errors``
exceptions whose field violations name the request fields.
"""
