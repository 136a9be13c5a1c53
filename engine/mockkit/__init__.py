"""The mock kit: what every vendor mock shares, a module per idea.

``base`` (:class:`MockBase`: clock, seeded draws, fault gate, tokens, statuses, the stats
route, serving), ``clock``, ``tokens``, ``faults`` (latency and faults), ``threshold``
(a vendor's call threshold and lock), ``wire`` (how answers travel), ``tls`` (HTTPS on
loopback), ``server`` (serving an app), ``main`` (a mock's command line).

Vendor mocks import it through ``unenroll.contract.mock``."""
