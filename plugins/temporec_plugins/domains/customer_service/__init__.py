"""The ``customer_service`` domain, in one package: ``reader`` (StackFAQ, BANKING77,
conversations.jsonl), ``training`` (replies learnt from the conversations' turns) and
``domain`` (rules, the hand-off, the reply evaluation)."""

from temporec_plugins.domains.customer_service.domain import (
    CustomerServiceDomain,
    CustomerServiceOptions,
    register_domains,
)

__all__ = ["CustomerServiceDomain", "CustomerServiceOptions", "register_domains"]
