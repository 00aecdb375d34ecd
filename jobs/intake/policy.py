"""The intake of one process: the settings, the limits table built from them once, and how URLs
are fetched. The API builds one at start-up (``api.main.create_app``); so may any other process
that checks submissions."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.intake.limits import ServiceLimits
from jobs.intake.sources import FetchPolicy
from jobs.intake.ssrf import Resolver, system_resolver
from jobs.settings import Settings


@dataclass(frozen=True)
class Intake:
    settings: Settings
    limits: ServiceLimits
    fetch: FetchPolicy

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver = system_resolver) -> Intake:
        fetch = FetchPolicy(
            timeout_s=settings.url_fetch_timeout_s,
            allow_private=settings.allow_private_urls,
            max_redirects=settings.url_max_redirects,
            resolver=resolver,
        )
        return cls(settings, ServiceLimits.from_settings(settings), fetch)
