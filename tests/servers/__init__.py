"""Real servers for the scale-out tests, started by the tests themselves in temporary folders:
PostgreSQL and Redis from Debian's packages, and moto's standalone S3 server on loopback."""
