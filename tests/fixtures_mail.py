"""Fixtures for the local mail stack (Postfix + Dovecot)."""
