"""Team hub's queries. Every function takes the ``AsyncSession`` of the running request first."""
