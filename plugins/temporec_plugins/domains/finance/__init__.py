"""The ``finance`` domain: the sentiment of financial texts (negative, neutral, positive),
learnt as replies to one-turn conversations: ``reader`` (Financial PhraseBank) and
``domain`` (the label catalog, training, accuracy and macro-F1 beside the baselines)."""

from temporec_plugins.domains.finance.domain import FinanceDomain, FinanceOptions, register_domains

__all__ = ["FinanceDomain", "FinanceOptions", "register_domains"]
