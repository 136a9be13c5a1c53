"""The mock kit: what every vendor mock shares (see ``kit``).

Vendor mocks import it through ``unenroll.contract.mock``."""
