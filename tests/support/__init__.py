"""Shared test support: process launchers (Redis, moto S3, webhook receiver, the API and workers),
payload builders, fixtures helpers. Used by the tests, bench/ and `make up` alike; never a test module."""
