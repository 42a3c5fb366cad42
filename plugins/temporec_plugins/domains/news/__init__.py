"""The ``news`` domain, in one package: ``reader`` (MIND and NeMig directories) and
``domain`` (rules, training settings, the impression evaluation)."""

from temporec_plugins.domains.news.domain import (
    NewsDomain,
    NewsOptions,
    register_domains,
)

__all__ = ["NewsDomain", "NewsOptions", "register_domains"]
